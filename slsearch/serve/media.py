"""A clip's media: its own video file, or a skeleton preview rendered once from its pose file.

Only files the index records are served, looked up by clip id in the index metadata: no part of a
request becomes a path. A recorded path is also checked before it is opened: a video must have a video
suffix and be a regular file (an index folder is untrusted input; a FIFO would hang a worker), a pose
file is read with the same checked loader as everywhere else. Video bytes go out with HTTP range
support (Starlette's FileResponse: 206 partial content, Accept-Ranges, 416 outside the file).

Skeleton previews are drawn with slsearch.render into `$SLSEARCH_CACHE/previews` (default
~/.cache/slsearch/previews), named by the clip's content hash, written to a temporary name and renamed,
so a preview is drawn once, a half-written one is never served, and two requests for the same clip wait
for one drawing.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

from slsearch.data.manifest import POSE_EXTENSIONS, Clip

VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
               ".avi": "video/x-msvideo"}
PREVIEW_VERSION = 1  # bump when the drawing changes: old previews are not reused
_HEX = re.compile(r"[0-9a-f]{16,128}")


def media_kind(path: str | None) -> str | None:
    """"video" for a recorded video file that is there, "skeleton" for a pose file, None otherwise."""
    if not path:
        return None
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in VIDEO_TYPES and suffix not in POSE_EXTENSIONS:
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except (OSError, ValueError):
        return None
    return "video" if suffix in VIDEO_TYPES else "skeleton"


def media_span(row: dict[str, Any], kind: str | None) -> tuple[float | None, float | None]:
    """(start, end) seconds inside the media: a cut of a longer video plays its part; a whole file and a
    skeleton preview (drawn from the clip's own frames) play whole: (None, None)."""
    if kind != "video":
        return None, None
    return row.get("start"), row.get("end")


def video_file(row: dict[str, Any]) -> tuple[Path, os.stat_result, str] | None:
    """(path, stat, content type) of a clip's recorded video, or None when it is not a video that is there."""
    path = row.get("path")
    if not path or media_kind(path) != "video":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Path(path), st, VIDEO_TYPES[os.path.splitext(path)[1].lower()]


def default_preview_dir() -> Path:
    return Path(os.environ.get("SLSEARCH_CACHE", Path.home() / ".cache" / "slsearch")) / "previews"


class Previews:
    """Skeleton previews of pose-only clips, drawn on first request and kept in `folder`."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else default_preview_dir()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def key(self, row: dict[str, Any]) -> str:
        """The clip's content hash (includes start/end) when it is a plain hex digest, else a hash of the
        recorded path and cut: never a string from the index used as a file name."""
        h = row.get("source_hash") or ""
        if not _HEX.fullmatch(h):
            h = hashlib.sha256(f"{row.get('path')}|{row.get('start')}|{row.get('end')}".encode()).hexdigest()
        return f"{h}-{PREVIEW_VERSION}"

    def cached(self, row: dict[str, Any]) -> Path | None:
        path = self.folder / f"{self.key(row)}.mp4"
        return path if path.is_file() else None

    def get(self, row: dict[str, Any]) -> Path:
        """The preview of a pose clip: from the cache, else drawn now (slow: call it in a worker thread)."""
        from slsearch.data.poses import load_pose
        from slsearch.render import DEFAULT_SIZE, _frame_size_of, render_pose

        key = self.key(row)
        out = self.folder / f"{key}.mp4"
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if out.is_file():
                return out
            source = Path(row["path"])
            seq = load_pose(Clip(id=row["id"], path=source, start=row.get("start"), end=row.get("end")), fps=None)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{uuid.uuid4().hex[:8]}.tmp.mp4"
            try:
                render_pose(seq.data, tmp, fps=seq.fps, size=_frame_size_of(source) or DEFAULT_SIZE)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
        with self._guard:
            self._locks.pop(key, None)
        return out
