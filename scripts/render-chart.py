#!/usr/bin/env python3
"""Renders deploy/helm/ebb with its values.yaml (or --set-namespace) the way `helm template`
would for these templates, with gotpl (Go's text/template in Python; no helm binary exists
here). The chart uses core template actions only (no Sprig functions), so this is exact for
it. Prints the manifests (templates, then crds/) as one YAML stream.

usage: render-chart.py CHART_DIR [RELEASE_NAMESPACE] [VALUES_YAML]

VALUES_YAML (as text) is laid over values.yaml, key by key at the top level, as `helm
template --values` would for these values.
"""
import pathlib
import sys

import gotpl
import yaml

chart = pathlib.Path(sys.argv[1])
namespace = sys.argv[2] if len(sys.argv) > 2 else "ebb-system"
values = yaml.safe_load((chart / "values.yaml").read_text())
if len(sys.argv) > 3:
    values.update(yaml.safe_load(sys.argv[3]) or {})
context = {
    "Values": values,
    "Release": {"Name": "ebb", "Namespace": namespace, "Service": "Helm"},
    "Chart": yaml.safe_load((chart / "Chart.yaml").read_text()),
}
docs = []
for path in sorted((chart / "crds").glob("*.yaml")):
    docs.append(path.read_text())
for path in sorted((chart / "templates").glob("*.yaml")):
    rendered = gotpl.render(path.read_text(), context)
    for doc in yaml.safe_load_all(rendered):
        if doc is not None:
            docs.append(yaml.safe_dump(doc, sort_keys=False))
print("\n---\n".join(d.strip() for d in docs))
