"""The generated parts of a page: the text between `<!-- NAME:start -->` and
`<!-- NAME:end -->`, read by standing.py and replaced by splice.py and standing.py."""


def markers(name):
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def part(doc, name):
    """The text of part `name` in `doc`."""
    start, end = markers(name)
    return doc[doc.index(start) + len(start):doc.index(end)]


def replace_part(doc, name, body):
    """`doc` with part `name` holding `body`, set apart by a blank line on each side."""
    start, end = markers(name)
    body = body.strip("\n")
    return doc[: doc.index(start) + len(start)] + "\n\n" + body + "\n\n" + doc[doc.index(end):]
