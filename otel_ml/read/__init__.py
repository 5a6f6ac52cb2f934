"""The read side: what the pages, the JSON API, the CLI and the notebook client show, from the evaluator's
snapshots and from a state directory (read-only).

    archive.py   a state directory's archive, live windows and model list
    compare.py   references as the processor chooses them, drift tables, histories over archived windows
    views.py     JSON-ready documents of reports and profiles (the API's fields)
    names.py     names as URL path segments (distinct, never empty, '.' or '..'), and as shown (escapes)
"""
