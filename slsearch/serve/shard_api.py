"""`slsearch serve SHARD --shard-api`: the routes a shard set's front asks a remote shard
(slsearch.index.remote has the protocol). Off by default: they return metadata rows with their folders
and raw token states, for the machines of one deployment, not for the public. With a shard key (the
deployment's shared secret, SHARD_KEY_ENV on the shard and on the front) every request must carry it
as `Authorization: Bearer KEY`, or it gets a 401."""

from __future__ import annotations

import hmac
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response

from slsearch.index.remote import SHARD_KEY_ENV, meta_bytes, pack_tokens
from slsearch.serve.limits import Pool
from slsearch.serve.state import LiveIndex

MAX_ROWS = 10_000  # token rows per request: far above a re-rank's candidates
MAX_QUERIES = 1_000


def add_shard_routes(app: FastAPI, live: LiveIndex, pool: Pool, key: str | None = None) -> None:
    def authorised(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise HTTPException(401, f"This shard needs the deployment's shard key: set {SHARD_KEY_ENV} on the "
                                     "front to the shard's.")

    router = APIRouter(dependencies=[Depends(authorised)])

    def version(asked: str | None):
        v = live.current()
        if v.searcher.is_set:
            raise HTTPException(422, "This server serves a shard set; a shard API serves one index.")
        if asked is not None and asked != v.name:
            raise HTTPException(409, f"The shard serves version {v.name} now, not {asked}; load the set again.")
        return v

    def part(v, collection: str):
        target = v.searcher.clips if collection == "clips" else v.searcher.texts
        if target is None:
            raise HTTPException(404, "This index has no sentences.")
        return target.parts[0]

    @router.get("/api/shard/info", include_in_schema=False)
    async def info() -> dict[str, Any]:
        v = version(None)
        return {"info": v.info, "version": v.name, "clips": v.clips,
                "texts": len(v.searcher.texts) if v.searcher.texts is not None else 0,
                "dim": v.searcher.clips.parts[0].dim}

    @router.get("/api/shard/meta/{collection}", include_in_schema=False)
    async def meta(collection: Literal["clips", "texts"]) -> Response:
        v = version(None)
        table = part(v, collection).coll.meta
        return Response(meta_bytes(table), media_type="application/vnd.apache.arrow.stream",
                        headers={"X-Slsearch-Version": v.name})

    @router.post("/api/shard/search/{collection}", include_in_schema=False)
    async def search(collection: Literal["clips", "texts"], body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        v = version(body.get("version"))
        p = part(v, collection)
        try:
            q = np.asarray(body["vectors"], np.float32)
            n = int(body["n"])
        except (KeyError, TypeError, ValueError):
            raise HTTPException(422, "The body needs vectors (a list of lists of numbers) and n.") from None
        if q.ndim != 2 or q.shape[1] != v.searcher.model.net.embed_dim or not 0 < len(q) <= MAX_QUERIES \
                or not 0 < n <= len(p):
            raise HTTPException(422, f"Give 1 to {MAX_QUERIES} vectors of {v.searcher.model.net.embed_dim} numbers "
                                     f"and n from 1 to {len(p)}.")
        scores, rows = await pool.run(lambda: p.search(q, n, prefetch=True), "The shard search")
        return {"scores": scores.tolist(), "rows": rows.tolist()}

    @router.post("/api/shard/tokens/{collection}", include_in_schema=False)
    async def tokens(collection: Literal["clips", "texts"], body: dict[str, Any] = Body(...)) -> Response:
        v = version(body.get("version"))
        p = part(v, collection)
        try:
            rows = np.asarray(body["rows"], np.int64)
        except (KeyError, TypeError, ValueError):
            raise HTTPException(422, "The body needs rows (a list of row numbers).") from None
        if rows.ndim != 1 or len(rows) > MAX_ROWS or (len(rows) and (rows.min() < 0 or rows.max() >= len(p))):
            raise HTTPException(422, f"Give at most {MAX_ROWS} row numbers from 0 to {len(p) - 1}.")
        flat, counts = await pool.run(lambda: p.gather(rows), "The token read")
        return Response(pack_tokens(flat, counts), media_type="application/octet-stream")

    app.include_router(router)
