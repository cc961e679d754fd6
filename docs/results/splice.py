"""Replaces the generated parts of docs/results.md: for each NAME BODY_FILE pair, the text
between `<!-- NAME:start -->` and `<!-- NAME:end -->` becomes the file's content. Then the
summary of where the SLO policy stands is computed again from the page (standing.py).
Usage: python3 docs/results/splice.py NAME BODY_FILE [NAME BODY_FILE ...]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from parts import replace_part  # noqa: E402
from standing import with_standing  # noqa: E402

args = sys.argv[1:]
if not args or len(args) % 2:
    sys.exit(__doc__)
doc = open("docs/results.md").read()
for name, path in zip(args[::2], args[1::2]):
    doc = replace_part(doc, name, open(path).read())
open("docs/results.md", "w").write(with_standing(doc))
