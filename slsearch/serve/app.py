"""The HTTP API of `slsearch serve`: routes only, over Searcher (state.py), media.py and uploads.py.

    GET  /healthz                      status, index, version, clips
    GET  /metrics                      Prometheus text (metrics.py)
    GET  /api/search?q=TEXT&k=10       text -> clips (t2v)
    POST /api/search/clip?target=texts|clips&k=10   an uploaded clip -> sentences (v2t) or clips (v2v)
    POST /api/translate                an uploaded clip -> sentence (and gloss reading)
    GET  /api/clips/{id}               a clip's metadata
    GET  /api/clips/{id}/media         its video (range requests) or skeleton preview
    GET  /api/stats                    index statistics
    GET  /  and /static/*              the search page (slsearch/serve/static), when installed
    GET  /docs, /openapi.json          the API documented; /docs with Swagger UI served from the
                                       fastapi-offline package (no internet), absent without it

Every error answer is `{"detail": "one sentence"}`: 404 unknown clip or media, 413 upload over the
limit, 415 upload that is neither a video nor a pose file, 422 bad parameters or an unreadable clip,
503 over a time limit or out of resources. A 500 means a bug (logged with its traceback).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from slsearch import __version__
from slsearch.errors import SlsearchError
from slsearch.rank import RetrievalModel
from slsearch.serve import media as media_files
from slsearch.serve.limits import Pool, ServeSettings
from slsearch.serve.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from slsearch.serve.schemas import ClipInfo, Error, Health, SearchAnswer, Stats, TranslationAnswer
from slsearch.serve.state import IndexVersion, LiveIndex
from slsearch.serve.uploads import BodyLimitMiddleware, SavedUpload
from slsearch.text import MAX_QUERY_CHARS, normalise_query

log = logging.getLogger("slsearch.serve")
STATIC = Path(__file__).parent / "static"
_RANGE = re.compile(r"bytes=\s*(\d+-\d*|-\d+)(\s*,\s*(\d+-\d*|-\d+))*\s*")  # what FileResponse parses
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Error} for code in (404, 413, 415, 422, 503)}


def create_app(index_dir: str | Path, model: RetrievalModel | str | Path | None = None,
               settings: ServeSettings | None = None, live: LiveIndex | None = None,
               shard_api: bool = False, shard_key: str | None = None) -> FastAPI:
    """The API over the index folder `index_dir` (its current version, followed as writers commit).

    `model`: a RetrievalModel or checkpoint path (default: the checkpoint index.json names). Loads the
    index and the model now: a missing or damaged index fails here, not at the first request.
    `shard_api`: also answer a shard set's front (slsearch.serve.shard_api), for this index as one shard;
    with `shard_key`, only requests that carry that key.
    """
    settings = settings or ServeSettings()
    live = live or LiveIndex(index_dir, model, threads=settings.threads, poll_s=settings.poll_s, score=settings.score)
    previews = media_files.Previews(settings.preview_dir)
    metrics = Metrics()
    search_pool = Pool("search", settings.search_workers, settings.search_timeout_s)
    upload_pool = Pool("upload", settings.upload_workers, settings.upload_timeout_s)
    render_pool = Pool("render", 1, settings.render_timeout_s)
    docs = _swagger_assets()

    app = FastAPI(title="slsearch", version=__version__, docs_url=None, redoc_url=None,
                  description="Search sign-language video with text, and text with video. Every error is "
                              "`{\"detail\": \"one sentence\"}`.")
    app.state.live, app.state.settings, app.state.metrics = live, settings, metrics
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.router.routes)  # outermost: sees 413s
    _error_handlers(app, live)
    if shard_api:
        from slsearch.serve.shard_api import add_shard_routes

        if live.current().searcher.is_set:
            raise SlsearchError(f"{index_dir}: a shard set; --shard-api serves one index (serve each shard)")
        add_shard_routes(app, live, search_pool, shard_key)

    def hits(v: IndexVersion, found) -> list[dict[str, Any]]:
        rows = v.rows([h.id for h in found])
        out = []
        for h, row in zip(found, rows):
            kind = media_files.media_kind(row["path"]) if row else None
            start, end = media_files.media_span(row, kind) if row else (None, None)
            out.append({"rank": h.rank, "score": h.score, "id": h.id, "text": h.text, "glosses": h.glosses,
                        "start": start, "end": end, "media_url": _media_url(h.id) if kind else None,
                        "media_kind": kind, "span": _hit_span(h, row, kind)})
        return out

    def _hit_span(h, row, kind) -> list[float] | None:
        """A T2V hit's matched seconds in its media: the file's seconds for a recorded video, the clip's
        own seconds for a skeleton preview (drawn from the clip's frames alone); null otherwise."""
        span = getattr(h, "span", None)
        if span is None:
            return None
        offset = (row or {}).get("start") if kind == "skeleton" else None
        offset = offset if isinstance(offset, (int, float)) and offset == offset else 0.0
        return [max(0.0, span[0] - offset), max(0.0, span[1] - offset)]

    def answer(v: IndexVersion, query: str, mode: str, found, t0: float) -> dict[str, Any]:
        return {"query": query, "mode": mode, "results": hits(v, found), "version": v.name,
                "took_ms": round((time.perf_counter() - t0) * 1000, 3)}

    # --- service --------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and the index version answering now."""
        v = live.current()
        return {"status": "ok", "index": live.name, "version": v.name, "clips": v.clips}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus() -> Response:
        """Requests, errors and latency histograms per endpoint, in the Prometheus text format."""
        v = live.current()
        gauges = [("slsearch_index_clips", "Clips in the index version answering now.", v.clips),
                  ("slsearch_index_sentences", "Sentences in the index version answering now.", v.sentences),
                  ("slsearch_index_reloads_total", "New index versions picked up without a restart.", live.reloads),
                  ("slsearch_index_reload_failures_total", "Index versions that failed to load.",
                   live.reload_failures)]
        for pool in (search_pool, upload_pool, render_pool):
            gauges.append((f"slsearch_{pool.name}_in_flight", f"Requests in the {pool.name} pool (waiting or "
                                                              "running).", pool.in_flight))
        return PlainTextResponse(metrics.render(gauges), media_type=CONTENT_TYPE)

    # --- search ---------------------------------------------------------------------------------
    @app.get("/api/search", response_model=SearchAnswer, responses=ERRORS, tags=["search"])
    async def search(q: str = Query(..., description=f"Words to search for (at most {MAX_QUERY_CHARS} "
                                                     "characters after normalisation)."),
                     k: int = Query(10, ge=1, le=settings.max_k, description="Number of results.")) -> dict:
        """Text -> the clips that sign it, best first (t2v)."""
        t0 = time.perf_counter()
        v = live.current()  # this request's version, whatever a writer commits meanwhile
        try:
            query = normalise_query(q)
        except SlsearchError as e:
            raise HTTPException(422, str(e)) from None
        found = await search_pool.run(lambda: v.searcher.search_text(query, k=k), "The search")
        return answer(v, query, "t2v", found, t0)

    @app.get("/api/search/gloss", response_model=SearchAnswer, responses=ERRORS, tags=["search"])
    async def search_gloss(q: str = Query(..., description="Glosses, e.g. MORGEN REGEN (upper-cased, split on "
                                                           "spaces)."),
                           k: int = Query(10, ge=1, le=settings.max_k, description="Number of results.")) -> dict:
        """Glosses -> the clips whose gloss reading holds them, in their order first (g2v; models with a gloss
        head). Glosses the model does not know are left out and listed in `unknown_glosses`."""
        from slsearch.index.search import split_gloss_query

        t0 = time.perf_counter()
        v = live.current()
        try:
            query = normalise_query(q)
            _, unknown = split_gloss_query(query, v.searcher.model.net.config.glosses)
        except SlsearchError as e:
            raise HTTPException(422, str(e).removeprefix("--gloss: ")) from None

        def work():
            try:
                return v.searcher.search_glosses(query, k=k)
            except SlsearchError as e:
                raise HTTPException(422, "This index's model reads no glosses (no gloss head), so it cannot "
                                         "be searched by gloss." if "reads no glosses" in str(e) else str(e)) from None

        found = await search_pool.run(work, "The search")
        return {**answer(v, query.upper(), "g2v", found, t0), "unknown_glosses": unknown}

    @app.post("/api/search/clip", response_model=SearchAnswer, responses=ERRORS, tags=["search"])
    async def search_clip(file: UploadFile = File(..., description="A video or pose file (.pose, .npz, .npy)."),
                          target: Literal["texts", "clips"] = Query("texts", description="texts: the sentences "
                                                                    "signed in it (v2t); clips: similar clips (v2v)."),
                          k: int = Query(10, ge=1, le=settings.max_k, description="Number of results.")) -> dict:
        """An uploaded clip -> the corpus sentences it signs (v2t), or the most similar clips (v2v). A v2t
        result's id and media are those of the first clip that carries the sentence."""
        t0 = time.perf_counter()
        v = live.current()
        if target == "texts" and v.searcher.texts is None:
            raise HTTPException(422, "This index has no sentences (it was built without texts); "
                                     "search with target=clips.")

        def work():
            up = SavedUpload(file.file, file.filename, settings.max_upload_bytes)
            try:
                pose = up.pose(crops=v.searcher.model.net.video.front_end.needs_crops)
                try:
                    return up.shown, v.searcher.search_video(pose, k=k, target=target)
                except SlsearchError as e:
                    raise HTTPException(422, up.message(e)) from None
            finally:
                up.close()

        shown, found = await upload_pool.run(work, "Searching with the clip")
        return answer(v, shown, "v2t" if target == "texts" else "v2v", found, t0)

    @app.post("/api/translate", response_model=TranslationAnswer, responses=ERRORS, tags=["search"])
    async def translate(file: UploadFile = File(..., description="A video or pose file (.pose, .npz, .npy).")) -> dict:
        """An uploaded clip -> the model's translation, with its gloss reading where the model has one."""
        from slsearch.index.search import _threads
        from slsearch.models.translator import translate as decode

        model = live.current().searcher.model

        def work():
            up = SavedUpload(file.file, file.filename, settings.max_upload_bytes)
            try:
                pose = up.pose()
                stride = model.net.temporal_stride
                if pose.frames < stride:
                    raise HTTPException(422, f"{up.shown}: the clip has {pose.frames} frames, fewer than the "
                                             f"model's temporal stride of {stride}.")
                try:
                    with _threads(settings.threads):
                        [r] = decode(model.net, [pose.data], model.decode)
                except (SlsearchError, ValueError) as e:
                    raise HTTPException(422, up.message(e)) from None
                return {"translation": r.text, "glosses": r.glosses, "score": float(r.score)}
            finally:
                up.close()

        return await upload_pool.run(work, "Translating the clip")

    # --- clips ----------------------------------------------------------------------------------
    def clip_row(v: IndexVersion, clip_id: str) -> dict[str, Any]:
        row = v.row(clip_id)
        if row is None:
            raise HTTPException(404, f"No clip with id {clip_id[:200]!r} in this index.")
        return row

    @app.head("/api/clips/{clip_id:path}/media", include_in_schema=False)
    @app.get("/api/clips/{clip_id:path}/media", responses=ERRORS, tags=["clips"], response_class=FileResponse)
    async def clip_media(clip_id: str, request: Request) -> Response:
        """The clip's recording (HTTP range requests supported), or for a pose-only clip a skeleton
        preview (video/mp4, drawn on first request and cached)."""
        if not _valid_range(request.headers.get("range")):
            raise HTTPException(400, "The Range header is not a byte range such as bytes=0-1023.")
        row = clip_row(live.current(), clip_id)
        video = media_files.video_file(row)
        if video is not None:
            path, st, content_type = video
            return FileResponse(path, media_type=content_type, stat_result=st,
                                headers={"Cache-Control": "private, max-age=3600"})
        if media_files.media_kind(row["path"]) == "skeleton":
            out = previews.cached(row)
            if out is None:
                def draw():
                    try:
                        return previews.get(row)
                    except SlsearchError as e:
                        raise HTTPException(404, f"Clip {clip_id[:200]!r} has no preview: its pose file cannot "
                                                 f"be drawn ({_basename_message(e, row)}).") from None
                out = await render_pool.run(draw, "Drawing the skeleton preview")
            try:
                st = os.stat(out)
            except OSError:
                raise HTTPException(503, "The skeleton preview vanished from the cache; try again.") from None
            return FileResponse(out, media_type="video/mp4", stat_result=st,
                                headers={"Cache-Control": "private, max-age=3600"})
        raise HTTPException(404, f"Clip {clip_id[:200]!r} has no media: the file the index records is not there "
                                 "or is neither a video nor a pose file.")

    @app.get("/api/clips/{clip_id:path}", response_model=ClipInfo, responses=ERRORS, tags=["clips"])
    async def clip_info(clip_id: str) -> dict:
        """A clip's metadata: its file's name (never its folder), sentence, gloss reading, split, signer,
        length, and where its media plays."""
        row = clip_row(live.current(), clip_id)
        kind = media_files.media_kind(row["path"])
        start, end = media_files.media_span(row, kind)
        return {"id": row["id"], "path": os.path.basename(row["path"]) if row["path"] else None,
                "text": row["text"], "glosses": row["gloss_reading"], "split": row["split"],
                "signer": row["signer"], "duration": row["duration"], "frames": row["frames"], "fps": row["fps"],
                "start": start, "end": end,
                "media_url": _media_url(row["id"]) if kind else None, "media_kind": kind}

    @app.get("/api/stats", response_model=Stats, tags=["service"])
    async def stats() -> dict:
        """How many clips and sentences, by split and media kind; the index type, checkpoint and version."""
        v = live.current()
        clips = v.searcher.clips
        splits = Counter(s if s is not None else "none" for s in clips.column("split").tolist())
        kinds = Counter(_kind_by_name(p) for p in clips.column("path").tolist())
        info = v.info
        return {"index": live.name, "version": v.name, "clips": v.clips, "sentences": v.sentences,
                "splits": dict(sorted(splits.items())),
                "signers": len({s for s in clips.column("signer").tolist() if s is not None}),
                "media": {k: kinds.get(k, 0) for k in ("video", "skeleton", "none")},
                "index_type": _one_or_all(p.info("index_type") for p in clips.parts),
                "factory": _one_or_all(p.info("factory") for p in clips.parts),
                "checkpoint": info["checkpoint"]["hash"], "reads_glosses": v.searcher.readings is not None,
                "created": info.get("created"), "updated": info.get("updated"), "reloads": live.reloads}

    # --- the page and the docs ------------------------------------------------------------------
    if (STATIC / "index.html").is_file():
        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                                headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if docs is not None:
        app.mount("/docs-assets", StaticFiles(directory=docs), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def swagger() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="slsearch API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon.png",
                                       swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io
    return app


def _valid_range(header: str | None) -> bool:
    """No Range header, or byte ranges FileResponse can answer (its own refusals are plain text)."""
    if header is None:
        return True
    if not _RANGE.fullmatch(header):
        return False
    pairs = (part.strip().split("-") for part in header.split("=", 1)[1].split(","))
    return all(not a or not b or int(a) <= int(b) for a, b in pairs)


def _one_or_all(values) -> str | None:
    """A setting the shards of a set share, or theirs joined by commas (one index: its own)."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    return ", ".join(distinct) if distinct else None


def _media_url(clip_id: str) -> str:
    return f"/api/clips/{quote(clip_id, safe='')}/media"


def _kind_by_name(path: str | None) -> str:
    suffix = os.path.splitext(path or "")[1].lower()
    return "video" if suffix in media_files.VIDEO_TYPES else "skeleton" if suffix in media_files.POSE_EXTENSIONS \
        else "none"


def _basename_message(e: BaseException, row: dict[str, Any]) -> str:
    """An error about a recorded file, naming the file but not its folder."""
    text = str(e)
    if row.get("path"):
        text = text.replace(str(row["path"]), os.path.basename(row["path"]))
    return text[:300]


def _swagger_assets() -> Path | None:
    """Swagger UI's script and stylesheet from the fastapi-offline package (no CDN), if it is installed."""
    spec = find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _sentence(error: dict[str, Any]) -> str:
    """One validation error of FastAPI's as one sentence naming the parameter."""
    where, *names = [str(x) for x in error.get("loc", ())] or ["request"]
    name = ".".join(names) or where
    if where == "body" and error.get("type") == "missing":
        return f"The form field {name!r} is missing: send the clip as multipart/form-data in the field 'file'."
    message = str(error.get("msg", "is not valid")).rstrip(".")
    kind = {"query": "Query parameter", "path": "Path parameter", "body": "Form field"}.get(where, where)
    return f"{kind} {name!r}: {message[0].lower() + message[1:] if message else 'is not valid'}."


def _error_handlers(app: FastAPI, live: LiveIndex) -> None:
    def clean(text: str) -> str:  # the server's own folders stay out of answers
        return text.replace(str(live.index_dir), live.name)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": clean(str(e.detail))}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        return JSONResponse({"detail": _sentence(errors[0]) if errors else "The request is not valid."}, 422)

    @app.exception_handler(SlsearchError)
    async def slsearch_error(request: Request, e: SlsearchError) -> JSONResponse:
        return JSONResponse({"detail": clean(str(e))}, 422)

    @app.exception_handler(OSError)
    async def environment(request: Request, e: OSError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, e)
        return JSONResponse({"detail": f"The server could not do this now ({e.strerror or type(e).__name__}); "
                                       "try again later."}, 503)

    @app.exception_handler(MemoryError)
    async def memory(request: Request, e: MemoryError) -> JSONResponse:
        return JSONResponse({"detail": "The server ran out of memory for this request; try a shorter clip."}, 503)

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"Internal error ({type(e).__name__}); the server log has the details."}, 500)
