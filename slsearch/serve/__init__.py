"""`slsearch serve`: the search engine over HTTP (FastAPI on uvicorn) and its search page.

    app.py      create_app(index_dir, model=None, settings=None) -> FastAPI: the routes, thin over the library
    state.py    LiveIndex: the index version answering now; picks up new versions without a restart
    media.py    a clip's media: its recorded video (range requests) or a cached skeleton preview
    uploads.py  uploaded clips: the body size limit, recognising the file, reading its pose
    limits.py   ServeSettings (limits) and the worker pools that keep slow work off the event loop
    metrics.py  Prometheus text: requests, errors and latency histograms per endpoint
    schemas.py  the JSON answers (they document the API at /docs)
    static/     the search page (index.html, app.js, style.css): no assets from the internet
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any):
    """slsearch.serve.app.create_app (imported on use: FastAPI is only needed to serve)."""
    from slsearch.serve.app import create_app as create

    return create(*args, **kwargs)
