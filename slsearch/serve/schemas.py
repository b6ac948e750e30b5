"""The JSON the API answers with (pydantic models: they document the API at /docs and /openapi.json)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

MediaKind = Optional[Literal["video", "skeleton"]]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    index: str = Field(description="The index folder's name.")
    version: str = Field(description="The index version answering now, e.g. v3.")
    clips: int


class Hit(BaseModel):
    rank: int = Field(description="1-based.")
    score: float
    id: str = Field(description="Clip id; for a sentence result (v2t) the first clip that carries the sentence.")
    text: Optional[str] = Field(description="The clip's sentence, or the sentence found.")
    glosses: Optional[str] = Field(description="The gloss reading of a clip result (models with a gloss head).")
    start: Optional[float] = Field(description="Seconds into the media where the clip starts (null: its beginning).")
    end: Optional[float] = Field(description="Seconds into the media where the clip ends (null: its end).")
    media_url: Optional[str] = Field(description="Where the clip plays (GET, range requests), null without media.")
    media_kind: MediaKind = Field(description="video: the clip's own recording; skeleton: a drawing of a pose-only "
                                              "clip; null: no media.")
    span: Optional[list[float]] = Field(None, description="Text searches: [start, end] seconds in the media where "
                                                          "the query matched best (playback starts there); null "
                                                          "otherwise.")


class SearchAnswer(BaseModel):
    query: str = Field(description="The query as searched (normalised), or the uploaded file's name.")
    mode: Literal["t2v", "v2t", "v2v", "g2v"]
    results: list[Hit]
    version: str = Field(description="The index version that answered.")
    took_ms: float
    unknown_glosses: Optional[list[str]] = Field(None, description="Gloss searches: the query's glosses the model "
                                                                   "does not know (left out of the search).")


class TranslationAnswer(BaseModel):
    translation: str
    glosses: Optional[str] = Field(description="What the model's gloss head reads in the clip (null without one).")
    score: float = Field(description="Length-normalised log-probability of the translation.")


class ClipInfo(BaseModel):
    id: str
    path: Optional[str] = Field(description="The recorded file's name (never its folder).")
    text: Optional[str]
    glosses: Optional[str] = Field(description="The model's gloss reading of the clip.")
    split: Optional[str]
    signer: Optional[str]
    duration: Optional[float]
    frames: Optional[int]
    fps: Optional[float]
    start: Optional[float]
    end: Optional[float]
    media_url: Optional[str]
    media_kind: MediaKind


class Stats(BaseModel):
    index: str
    version: str
    clips: int
    sentences: int
    splits: dict[str, int] = Field(description="Clips per split; clips without one count under \"none\".")
    signers: int
    media: dict[str, int] = Field(description="Clips by media kind: video, skeleton, none.")
    index_type: Optional[str]
    factory: Optional[str]
    checkpoint: str = Field(description="Hash of the checkpoint the index was built with.")
    reads_glosses: bool
    created: Optional[str]
    updated: Optional[str]
    reloads: int = Field(description="New index versions picked up since the server started.")


class Error(BaseModel):
    detail: str
