"""Replaces the generated parts of docs/results.md: for each NAME BODY_FILE pair, the text
between `<!-- NAME:start -->` and `<!-- NAME:end -->` becomes the file's content. Then the
summary of where the SLO policy stands is computed again from the page (standing.py).
Usage: python3 docs/results/splice.py NAME BODY_FILE [NAME BODY_FILE ...]"""
import subprocess
import sys

args = sys.argv[1:]
if not args or len(args) % 2:
    sys.exit(__doc__)
doc = open("docs/results.md").read()
for name, path in zip(args[::2], args[1::2]):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = open(path).read().strip("\n")
    doc = doc[: doc.index(start) + len(start)] + "\n\n" + body + "\n\n" + doc[doc.index(end):]
open("docs/results.md", "w").write(doc)
subprocess.run([sys.executable, "docs/results/standing.py"], check=True)
