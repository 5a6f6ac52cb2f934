"""What otel-ml shows: the built-in pages and JSON API of ``otel-ml serve``, and offline HTML reports.

- ``views``: the numbers, as JSON-ready data (the API's documents);
- ``pages`` and ``charts``: HTML and SVG charts drawn from them (no JavaScript);
- ``server``: the listener (``ui.endpoint``); ``history``: the live "over time" ring; ``report``: ``otel-ml
  report`` from the archive.
"""
