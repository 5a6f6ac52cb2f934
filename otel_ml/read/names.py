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
