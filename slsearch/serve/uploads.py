"""Uploaded clips: a size limit on request bodies, and an upload turned into a pose sequence.

The limit is enforced before the body is read when the client announces its length (Content-Length),
and while it is read otherwise (chunked uploads): either way the answer is 413 with one sentence. An
upload is copied into a private temporary folder under a name of our own (only its suffix is chosen
from what the bytes are), recognised by its first bytes (a video container or a pose file), and read
with `load_pose` like any other clip (videos through MediaPipe extraction in a worker process, cached).
Messages never show the temporary path: they name the file as the client called it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slsearch.data.manifest import POSE_EXTENSIONS, VIDEO_EXTENSIONS
from slsearch.data.pose_files import PoseSequence
from slsearch.errors import SlsearchError

MB = 1 << 20
NOT_A_CLIP = ("The uploaded file is neither a video ({}) nor a pose file ({}).".format(
    ", ".join(sorted(VIDEO_EXTENSIONS)), ", ".join(sorted(POSE_EXTENSIONS))))


def too_large(limit: int) -> str:
    return f"The upload is larger than this server's limit of {limit / MB:g} MB."


class BodyLimitMiddleware:
    """413 for request bodies over `limit` bytes: refused up front when Content-Length says so, else
    stopped as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                announced = None
            if announced is None or announced < 0:
                await JSONResponse({"detail": "The Content-Length header is not a number."}, 400)(scope, receive, send)
                return
            if announced > self.limit:
                await JSONResponse({"detail": too_large(self.limit)}, 413, headers={"Connection": "close"})(
                    scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, too_large(self.limit))  # FastAPI passes it to our handler
            return message

        await self.app(scope, counted, send)


def sniff(head: bytes, filename: str) -> str | None:
    """The suffix to read an upload with, from its first bytes (its name only breaks a tie); None when it
    is neither a video nor a pose file."""
    suffix = os.path.splitext(filename or "")[1].lower()
    if head.startswith(b"\x93NUMPY"):
        return ".npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):  # a zip: numpy's .npz
        return ".npz"
    if head[4:8] == b"ftyp":
        return ".mov" if head[8:10] == b"qt" else ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return ".webm" if suffix == ".webm" else ".mkv"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime without an ftyp box
        return ".mov"
    if suffix == ".pose":  # pose-format files start with a float version number: no magic to test
        return ".pose"
    return None


class SavedUpload:
    """An upload copied into a temporary folder of its own; removed on close."""

    def __init__(self, source: IO[bytes], filename: str | None, limit: int):
        self.shown = _shown_name(filename)
        self.folder = Path(tempfile.mkdtemp(prefix="slsearch-upload-"))
        try:
            head = source.read(64)
            if not head:
                raise HTTPException(422, "The uploaded file is empty.")
            suffix = sniff(head, filename or "")
            if suffix is None:
                raise HTTPException(415, NOT_A_CLIP)
            self.path = self.folder / f"upload{suffix}"
            with open(self.path, "wb") as out:
                out.write(head)
                copied = len(head)
                while chunk := source.read(MB):
                    copied += len(chunk)
                    if copied > limit:
                        raise HTTPException(413, too_large(limit))
                    out.write(chunk)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def message(self, error: BaseException) -> str:
        """An error's message with our temporary path replaced by the name the client gave."""
        text = str(error).replace(str(self.path), self.shown).replace(str(self.folder), "upload")
        text = text.replace("<array>", self.shown)  # Searcher's name for a pose array
        return text if len(text) <= 500 else text[:500] + "..."

    def pose(self, crops: bool = False) -> PoseSequence:
        """The upload as a pose sequence at 25 fps (with a video's crops: for a model with an RGB stream);
        HTTPException 422 (one sentence) when it cannot be read."""
        from slsearch.data.poses import load_pose

        try:
            return load_pose(self.path, crops=crops)
        except SlsearchError as e:
            raise HTTPException(422, self.message(e)) from None


def _shown_name(filename: str | None) -> str:
    """The client's file name for messages: its last part, printable, at most 80 characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:80]
    return name or "upload"
