"""Names in URL paths: one segment per model, version or feature name, distinct for distinct names (the pages,
the JSON API and the notebook client build and read them alike; standard library only, for the client)."""

from __future__ import annotations


def name_segment(name: str) -> str:
    """A name (model, version, feature) as one URL path segment, before percent-encoding. Distinct names give
    distinct segments, and none is empty, ``.`` or ``..`` (which browsers resolve away, ``%2E`` too): names that
    are one of those or start with ``_`` get one more ``_`` in front.

    >>> [name_segment(n) for n in ("", "_", ".", "..", "v1", "_x")]
    ['_', '__', '_.', '_..', 'v1', '__x']
    >>> all(name_from_segment(name_segment(n)) == n for n in ("", "_", "__", ".", "..", "v1", "_x"))
    True
    """
    return "_" + name if name in ("", ".", "..") or name.startswith("_") else name


def name_from_segment(segment: str) -> str:
    return segment[1:] if segment.startswith("_") else segment


def printable(name: str) -> str:
    r"""``name`` as it may be shown (a terminal, a page, a chart): characters that are not printable (control
    characters, which can move a terminal's cursor or end an SVG, and format characters such as the bidirectional
    overrides, which make one name display as another) as Python escapes; everything else unchanged.

    >>> printable("churn"), printable("a\x1b[2Jb"), printable("abc\u202efdp.exe"), printable("x\x00")
    ('churn', 'a\\x1b[2Jb', 'abc\\u202efdp.exe', 'x\\x00')
    """
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
