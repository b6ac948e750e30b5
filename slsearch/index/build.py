"""`slsearch index`: embed clips into an index folder, or add new ones to it.

    clips (collect_clips) -> content hash -> [--add: skip known hashes] -> pose (load_pose; videos
    through cached MediaPipe extraction) -> encode_videos -> global vectors -> FAISS
                                                           -> token states  -> tokens.f16.npy
    their sentences -> encode_texts -> texts.faiss + text_tokens.f16.npy

A clip that cannot be read is reported (one line: file and reason) and skipped; the summary counts
them. Everything is written through `store.IndexWriter`, so the previous index stays usable until
the new one is complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from slsearch.data.long_media import (LongMedia, SegmentOptions, find_long_media, load_long_pose, segment_clips,
                                      segment_hash, segment_pose)
from slsearch.data.manifest import VIDEO_EXTENSIONS, Clip, collect_clips
from slsearch.data.pose_files import hands_seen
from slsearch.errors import InputError, SlsearchError
from slsearch.index import faiss_index
from slsearch.index.choose import (FLAT_MAX_VECTORS, IndexSpec, check_index_type, choose_index, parse_memory,
                                   spec_for_type)
from slsearch.index.shards import is_shard_set
from slsearch.index.store import CLIP_SCHEMA, TEXT_SCHEMA, Collection, IndexWriter, StoredIndex
from slsearch.progress import Progress, track

EMBED_BATCH = 32  # clips per encode_videos call (and per progress step)


@dataclass
class Failure:
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}" if not self.reason.startswith(self.path) else self.reason


def source_hash(clip: Clip) -> str:
    """Content hash of the clip's file or frame folder, plus its start/end when it is a cut."""
    from slsearch.data.video import content_hash

    if clip.path is None:
        raise InputError(clip.id, "manifest row has no file path")
    path = Path(clip.path)
    if not path.exists():
        raise InputError(path, "file not found")
    h = content_hash(path)
    if clip.start is not None or clip.end is not None:
        h = segment_hash(h, clip.start, clip.end)
    return h


def _load_model(model_dir: str | Path | None, model: Any) -> tuple[Any, str | None]:
    """The RetrievalModel to index with (its network embeds, its lexicon gives the reading priors)."""
    if model is not None:
        return model, str(Path(model_dir or model.path).resolve()) if (model_dir or model.path) else None
    if model_dir is None:
        raise SlsearchError("indexing needs a model: pass --model CHECKPOINT_DIR")
    from slsearch.rank.model import load_retrieval_model

    return load_retrieval_model(model_dir), str(Path(model_dir).resolve())


def _extract_videos(clips: list[Clip], failures: dict[str, Failure], progress: Progress | None,
                    ray: str | None = None, crops: bool = False) -> None:
    """Run MediaPipe over video / frame-folder clips in parallel (`ray`: on Ray actors); the poses (`crops`:
    and their crops, for a model with an RGB stream) land in the cache."""
    videos = [c for c in clips if c.path is not None and (Path(c.path).is_dir()
                                                          or Path(c.path).suffix.lower() in VIDEO_EXTENSIONS)]
    if not videos:
        return
    from slsearch.data.extract import extract_many

    advance = track(progress, "extracting poses", len(videos))
    for r in extract_many(videos, on_result=lambda r: advance(1), ray=ray, crops=crops):
        if r.error:
            failures[r.clip.id] = Failure(str(r.clip.path), r.error)


def _segment_long_media(long_media: list[LongMedia], options: SegmentOptions, known: set[str],
                        failures: dict[str, Failure], notes: list[str],
                        progress: Progress | None) -> tuple[list[Clip], dict[str, str], set[str]]:
    """Cut each long media into segment clips (its pose from the extraction cache or its pose file).
    Returns the segments to embed (all of a media that is new or cut differently than before, none of one
    the index holds as it is), every segment's source hash, and the ids of the media whose segments
    changed (their old segments are replaced as a whole)."""
    new: list[Clip] = []
    hashes: dict[str, str] = {}
    changed: set[str] = set()
    advance = track(progress, "segmenting long media", len(long_media))
    for media in long_media:
        name = media.clip.path
        if any(c.id in failures for c in media.chunks):  # one failed chunk: the file is reported once
            reason = next(failures.pop(c.id).reason for c in media.chunks if c.id in failures)
            for c in media.chunks:
                failures.pop(c.id, None)
            failures[media.clip.id] = Failure(str(name), reason)
            advance(1)
            continue
        try:
            seq = load_long_pose(media)
            segments, plan = segment_clips(media, seq, options)
        except (InputError, SlsearchError) as e:
            failures[media.clip.id] = Failure(str(name), str(e))
            advance(1)
            continue
        del seq
        how = plan.method + (f", shift {plan.shift:+.1f} s" if plan.shift else "") \
            + (" (estimated)" if plan.method == "subtitles" and options.shift == "auto" else "")
        notes.append(f"{name}: {media.duration:.0f} s cut into {len(segments)} segments by {how}"
                     + (f" ({media.subtitles.name})" if plan.method == "subtitles" and media.subtitles else ""))
        notes.extend(f"{name}: {n}" for n in plan.notes)
        for c in segments:
            hashes[c.id] = segment_hash(media.file_hash, c.start, c.end)
        if not segments or any(hashes[c.id] not in known for c in segments):
            changed.add(media.clip.id)  # new or re-cut: all its segments replace the old ones
            new.extend(segments)
        advance(1)
    return new, hashes, changed


class _PoseSource:
    """Each clip's pose: segments are cut from their media's pose, held for one media at a time
    (segments arrive in media order), other clips through load_pose."""

    def __init__(self, long_media: list[LongMedia]):
        self.media = {m.clip.id: m for m in long_media}
        self.held: tuple[str, Any] | None = None

    def __call__(self, clip: Clip, crops: bool = False):
        from slsearch.data.poses import load_pose

        media_id = clip.extra.get("media") if clip.extra else None
        if media_id not in self.media:
            return load_pose(clip, crops=crops)
        if self.held is None or self.held[0] != media_id:
            self.held = None  # free the last media's pose before loading the next
            self.held = (media_id, load_long_pose(self.media[media_id]))
        part = segment_pose(self.held[1], clip)
        if not (crops and self.media[media_id].is_video):
            return part
        # an RGB stream: the segment's crops, cut (and cached) for its frames alone, not for the whole
        # programme (an hour's crops are ~1.6 GB); the times are those of the frames `cut` took
        from dataclasses import replace

        from slsearch.data.crops import cached_crops

        first = int(round((clip.start or 0.0) * part.fps))
        start, end = first / part.fps, (first + part.frames) / part.fps
        return replace(part, crops=cached_crops(Path(clip.path), part.data, part.fps, start, end))


@dataclass
class Embedded:
    """One clip embedded, with what its index row needs of its pose."""

    clip: Clip
    vector: np.ndarray  # (D,) the global vector
    tokens: np.ndarray  # (L, d) the valid token states
    reading: str | None  # its gloss reading (gloss head or `reader`), None without either
    posteriors: bytes | None  # the top glosses of each of its tokens, by the same (gloss_spotting.pack)
    duration: float
    frames: int
    fps: float
    hands: bool  # some frame shows a hand


def embed_batch(model, clips: Sequence[Clip], load_pose: Any = None,
                reader: Any = None) -> tuple[list[Embedded], dict[str, Failure]]:
    """One batch: poses -> encode_videos (-> the reader's gloss readings). A clip that cannot be loaded or
    encoded is a Failure (keyed by clip id), the others go on. The built-in path and the Ray actors
    (slsearch.distributed_ray) both embed through this."""
    from slsearch.encode import encode_videos

    if load_pose is None:
        from slsearch.data.poses import load_pose
    failures: dict[str, Failure] = {}
    batch, poses = [], []
    crops = model.video.front_end.needs_crops  # an RGB stream: videos (and their segments) with their crops
    for clip in clips:
        try:
            poses.append(load_pose(clip, crops=True) if crops else load_pose(clip))
            batch.append(clip)
        except (InputError, SlsearchError) as e:
            failures[clip.id] = Failure(str(clip.path), str(e))
    encoded = _encode_isolating_failures(model, batch, poses, failures, encode_videos)
    if reader is not None and encoded:
        from slsearch.recognition import read_poses_with_posteriors

        readings = read_poses_with_posteriors(reader, [seq.data for _, seq, _ in encoded])
        encoded = [(c, seq, (e[0], e[1], *r)) for (c, seq, e), r in zip(encoded, readings)]
    return [Embedded(c, *enc, seq.duration, seq.frames, seq.fps, hands_seen(seq.data))
            for c, seq, enc in encoded], failures


def _embed_clips(model, clips: list[Clip], writer, segment: int, failures: dict[str, Failure],
                 progress: Progress | None, batch_size: int, load_pose: Any = None, reader: Any = None,
                 ray: str | None = None) -> tuple[list[dict[str, Any]], np.ndarray, list[str]]:
    """Poses -> encode_videos in batches (`embed_batch`; on Ray actors with `ray`, an address or "auto");
    token states stream into the segment in clip order. Returns rows, vectors and the ids of the clips in
    which no frame shows a hand (they are embedded all the same).
    `reader` (a recogniser, `index --readings`): the clips' gloss readings come from it, not the gloss head."""
    rows: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    without_hands: list[str] = []
    starts = range(0, len(clips), batch_size)
    batches = [[c for c in clips[start:start + batch_size] if c.id not in failures] for start in starts]
    if ray is None:
        results = (embed_batch(model, batch, load_pose, reader) for batch in batches)
    else:
        from slsearch.distributed_ray import embed_batches_ray

        results = embed_batches_ray(batches, model, load_pose, reader, address=ray)
    advance = track(progress, "embedding clips", len(clips))
    t0 = time.perf_counter()
    for start, (embedded, failed) in zip(starts, results):
        failures.update(failed)
        for e in embedded:
            if not e.hands:
                without_hands.append(e.clip.id)
            offset, count = writer.append(e.tokens)
            vectors.append(e.vector)
            clip = e.clip
            rows.append({"id": clip.id, "path": str(clip.path), "duration": e.duration,
                         "frames": e.frames, "fps": e.fps, "text": clip.text, "split": clip.split,
                         "signer": clip.signer, "start": clip.start, "end": clip.end,
                         "token_segment": segment, "token_offset": offset,
                         "token_count": count, "gloss_reading": e.reading, "gloss_posteriors": e.posteriors})
        done = min(start + batch_size, len(clips))
        advance(done - start, f"{done / (time.perf_counter() - t0):.1f} clips/s")
    return rows, (np.stack(vectors) if vectors else np.zeros((0, model.embed_dim), np.float32)), without_hands


def _encode_isolating_failures(model, clips, poses, failures, encode_videos):
    """Encode a batch; if it fails, encode one by one so only the bad clips are skipped."""
    if not clips:
        return []
    try:
        enc = encode_videos(model, poses)
        return [(c, p, _parts(enc, i)) for i, (c, p) in enumerate(zip(clips, poses))]
    except (SlsearchError, ValueError):
        pass
    out = []
    for c, p in zip(clips, poses):
        try:
            enc = encode_videos(model, [p])
            out.append((c, p, _parts(enc, 0)))
        except (SlsearchError, ValueError) as e:
            failures[c.id] = Failure(str(c.path), str(e).removeprefix("<array>: "))
    return out


def _parts(enc, i: int) -> tuple:
    """Clip i of an Encoded: (vector, tokens, reading, posteriors), None for what the model does not read."""
    return (enc.vectors[i], enc.tokens[i], enc.readings[i] if enc.readings else None,
            enc.posteriors[i] if enc.posteriors else None)


def _gloss_reader(readings: str | Path | None, model) -> tuple[Any, dict[str, str] | None]:
    """The recogniser an index reads glosses with (`index --readings`), and its record for index.json."""
    if readings is None:
        return None, None
    from slsearch.recognition import load_gloss_reader

    if model.net.config.glosses is None:
        raise SlsearchError(f"--readings {readings}: the model has no gloss head, so it has no lexicon to use "
                            "gloss readings with")
    reader = load_gloss_reader(readings)
    if list(reader.config.glosses) != list(model.net.config.glosses):
        raise SlsearchError(f"--readings {readings}: its gloss vocabulary is not the model's (trained on another "
                            "manifest); the lexicon could not read its glosses")
    return reader, {"path": str(Path(readings).resolve()), "hash": reader.checkpoint_hash}


def _new_index(vectors: np.ndarray, ids: np.ndarray, index_type: str | None, budget: int | None,
               what: str) -> tuple[Any, dict[str, Any]]:
    """Choose (or take the requested) index type, build it and tune its search parameter."""
    n, dim = vectors.shape
    spec: IndexSpec = spec_for_type(index_type, n, dim, budget) if index_type else choose_index(n, dim, budget)[0]
    index = faiss_index.build(spec, vectors, ids)
    tuning = faiss_index.tune(index, spec, vectors, ids)  # the summary notes a missed target
    info = {"index_type": spec.kind, "factory": spec.factory, "reason": spec.reason,
            "build_params": spec.build_params, "search_params": tuning["params"], "tuning": tuning,
            "gpu": faiss_index.gpu_available()}
    return index, info


def _reading_priors(lexicon, rows: list[dict[str, Any]], old_rows: list[dict[str, Any]],
                    prev: StoredIndex | None) -> str | None:
    """Fill each clip row's reading_prior for the model's lexicon (new rows, and kept ones when the index
    holds another lexicon's); returns the lexicon's fingerprint, None when it has no reverse channel."""
    if lexicon is None or not lexicon.has_reverse_channel:
        for r in old_rows + rows:
            r["reading_prior"] = None
        return None
    stale = prev is None or prev.info.get("lexicon") != lexicon.fingerprint
    todo = [r for r in (old_rows + rows if stale else rows) if r.get("gloss_reading") is not None]
    priors = lexicon.reading_priors([r["gloss_reading"] for r in todo]) if todo else []
    for r, p in zip(todo, priors):
        r["reading_prior"] = float(p)
    return lexicon.fingerprint


def _texts_collection(model, clip_rows: list[dict[str, Any]], prev: Collection | None, writer: IndexWriter,
                      index_type: str | None, budget: int | None, progress: Progress | None) -> Collection | None:
    """Sentences of the clips: known ones keep their ids, new ones are embedded and added;
    sentences no clip carries any more are dropped. Sets each row's text_id."""
    from slsearch.encode import encode_texts
    from slsearch.models.likelihood import has_prior, sentence_prior

    wanted = list(dict.fromkeys(r["text"] for r in clip_rows if r["text"]))
    prev_meta = prev.meta.to_pylist() if prev is not None else []
    known = {r["text"]: r for r in prev_meta}
    kept = [known[t] for t in wanted if t in known]
    new_texts = [t for t in wanted if t not in known]
    next_id = prev.next_id if prev is not None else 0
    new_rows: list[dict[str, Any]] = []
    vectors = np.zeros((0, model.embed_dim), np.float32)
    if new_texts:
        segment, seg_writer = writer.new_token_segment("texts", model.token_dim)
        enc = encode_texts(model, new_texts, progress=progress)
        vectors = enc.vectors
        priors = sentence_prior(model, new_texts) if has_prior(model) else [None] * len(new_texts)
        for i, (text, tok, prior) in enumerate(zip(new_texts, enc.tokens, priors)):
            offset, count = seg_writer.append(tok)
            new_rows.append({"faiss_id": next_id + i, "text": text, "token_segment": segment,
                             "token_offset": offset, "token_count": count,
                             "sentence_prior": None if prior is None else float(prior)})
    if not kept and not new_rows:
        return None
    new_ids = np.arange(next_id, next_id + len(new_rows), dtype=np.int64)
    if prev is not None and kept:
        index, info = prev.index, dict(prev.info)
        dropped = np.array([r["faiss_id"] for r in prev_meta if r["text"] not in set(wanted)], dtype=np.int64)
        if len(dropped):
            index = faiss_index.remove(index, dropped)
        if len(new_rows):
            faiss_index.add(index, vectors, new_ids)
    else:
        index, info = _new_index(vectors, new_ids, None, budget, "texts")  # texts: always automatic choice
    info["next_id"] = next_id + len(new_rows)
    rows = kept + new_rows
    ids_of = {r["text"]: r["faiss_id"] for r in rows}
    for r in clip_rows:
        r["text_id"] = ids_of.get(r["text"], -1) if r["text"] else -1
    return Collection(index, pa.Table.from_pylist(rows, schema=TEXT_SCHEMA), writer.token_files("texts"), info)


def build_index(paths: Sequence[str | Path], model_dir: str | Path | None, out: str | Path, add: bool = False,
                index_type: str | None = None, max_memory: int | str | None = None,
                batch_size: int = EMBED_BATCH, progress: Progress | None = None, model: Any = None,
                segmenting: SegmentOptions | None = None, tokens: str | None = None,
                readings: str | Path | None = None, ray: str | None = None) -> dict[str, Any]:
    """Embed the clips under `paths` into the index folder `out`; returns a summary dict.

    Long media (longer than `segmenting.params.longer_than`, or with a subtitle file beside them) are
    cut into segments (slsearch.data.long_media): each segment is a clip of the index with its file,
    start and end; `segmenting.method="off"` indexes every file whole.

    add=True keeps the existing index and embeds only clips whose content hash it does not hold yet
    (a clip id seen again with new content replaces the old entry). `index_type` overrides the
    automatic choice (flat, ivf, hnsw, ivfpq, opq or a FAISS factory string); `max_memory` (bytes
    or '4G') bounds the index's RAM. `model` reuses an already loaded `slsearch.rank.RetrievalModel`.
    `tokens` is the token store of a new index: fp16 (default), pq, pq-small, opq or a FAISS codec factory string
    (slsearch.index.token_codec); add=True keeps the index's own (None, or the same value).
    `readings`: a recogniser run (slsearch.models.cvt_slr) or checkpoint with a gloss head whose gloss readings
    the index stores instead of the model's own (for the lexicon and gloss search; searches read a query
    clip with it too); add=True keeps the index's reader.
    `ray` (an address, or "auto"): pose extraction and embedding run on Ray actors (slsearch.distributed_ray);
    the index is the same.
    """
    t0 = time.perf_counter()
    if is_shard_set(out):
        raise SlsearchError(f"{out}: a shard set; build or grow one of its shards with --shard NAME")
    budget = parse_memory(max_memory) if isinstance(max_memory, str) else max_memory
    if batch_size <= 0:
        raise SlsearchError(f"batch size must be positive, got {batch_size}")
    if index_type:
        check_index_type(index_type)
    model, checkpoint = _load_model(model_dir, model)
    net = model.net
    if readings is not None:  # a reader that cannot serve this model: refused before any embedding
        reader, reader_info = _gloss_reader(readings, model)
    if tokens is not None:  # a codec that cannot be built for this model: refused before any embedding
        from slsearch.index.token_codec import factory_for

        factory_for(tokens, net.token_dim)
    skipped: list[InputError] = []  # what folder scans left out (special files, symlinks leaving the folder)
    clips = collect_clips(paths, skipped=skipped)
    if not clips:
        raise SlsearchError(f"no clips found in {', '.join(map(str, paths))}"
                            + (f" ({len(skipped)} skipped: {'; '.join(str(e) for e in skipped[:3])})" if skipped else ""))
    notes: list[str] = []  # for the summary: what the user should know (the CLI shows them)
    probe_failures: list[InputError] = []
    segmenting = segmenting or SegmentOptions()
    clips, long_media = find_long_media(clips, segmenting, probe_failures, notes)
    skipped += probe_failures
    out = Path(out)
    if not add:  # refuse an impossible memory budget or index type before embedding anything
        n = max(1, len(clips) + len(long_media))  # long media give at least one segment each, if any
        _ = (spec_for_type(index_type, n, net.embed_dim, budget) if index_type
             else choose_index(n, net.embed_dim, budget))
    with IndexWriter(out, read_previous=add, tokens=tokens) as writer:
        prev: StoredIndex | None = writer.previous if add else None
        kept = (prev.info.get("readings") or {}) if prev is not None else {}
        if readings is None:  # a new index reads with the model; --add with the index's own reader
            reader, reader_info = _gloss_reader(kept.get("path"), model)
        if reader_info and kept.get("hash", reader_info["hash"]) != reader_info["hash"] or (
                prev is not None and readings is not None and not kept):
            raise SlsearchError(f"{out}: its gloss readings come from {kept.get('path') or 'the model'}, not "
                                f"{readings}; one index keeps one reader (rebuild without --add)")
        if prev is not None and prev.info["checkpoint"]["hash"] != model.hash:
            raise SlsearchError(f"{out}: built with checkpoint {prev.info['checkpoint']['hash']}, the model given "
                                f"is {model.hash}; vectors of two models cannot share an index "
                                "(rebuild without --add)")
        # Skipped entries are keyed apart from clip ids (the NUL prefix); they only feed the summary.
        failures: dict[str, Failure] = {f"\0skipped{i}": Failure(e.path, e.reason) for i, e in enumerate(skipped)}
        hashes: dict[str, str] = {}
        for clip in clips:
            try:
                hashes[clip.id] = source_hash(clip)
            except InputError as e:
                failures[clip.id] = Failure(str(clip.path or clip.id), str(e))
            except OSError as e:  # unreadable (permissions): this clip only, the batch goes on
                failures[clip.id] = Failure(str(clip.path), f"cannot be read ({e.strerror or e})")
        known = set(prev.clips.column("source_hash").tolist()) if prev is not None else set()
        todo = [c for c in clips if c.id in hashes and hashes[c.id] not in known]
        unchanged = sum(1 for c in clips if c.id in hashes and hashes[c.id] in known)
        chunks = [c for m in long_media for c in m.chunks]
        if net.video.front_end.needs_crops:  # whole clips' crops are cut by the extraction workers too
            _extract_videos(todo, failures, progress, ray, crops=True)
            _extract_videos(chunks, failures, progress, ray)
        else:
            _extract_videos(todo + chunks, failures, progress, ray)
        segments, segment_hashes, resegmented = _segment_long_media(long_media, segmenting, known, failures,
                                                                    notes, progress)
        hashes.update(segment_hashes)
        unchanged += len(segment_hashes) - len(segments)
        todo += segments
        clips = clips + segments  # what the summary counts as seen

        if prev is not None:  # keep every old segment (tokens of removed clips stay, unreferenced)
            writer.keep_token_files("clips", prev.clips.token_files)
            writer.keep_token_files("texts", prev.texts.token_files if prev.texts else [])
        segment, seg_writer = writer.new_token_segment("clips", net.token_dim)
        rows, vectors, without_hands = _embed_clips(net, todo, seg_writer, segment, failures, progress, batch_size,
                                     _PoseSource(long_media), reader, ray)
        if without_hands:
            notes.append(f"{len(without_hands)} of {len(rows)} clips show no hand in any frame (e.g. "
                         f"{', '.join(without_hands[:3])}): embedded from body and face alone; check their framing "
                         "or extraction")
        if not rows and prev is None:
            why = "; ".join(notes[-2:]) if not clips else f"{len(failures)} failed"
            raise SlsearchError(f"none of the {len(clips)} clips could be indexed ({why})")
        if not rows:  # nothing new: leave the index as it is
            return _summary(out, "add", clips, 0, unchanged, 0, failures, prev, t0, notes)

        next_id = prev.clips.next_id if prev is not None else 0
        ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
        for r, i in zip(rows, ids):
            r["faiss_id"], r["source_hash"] = int(i), hashes[r["id"]]
        if prev is not None:
            new_ids = {r["id"] for r in rows}

            def superseded(clip_id: str) -> bool:  # re-indexed, or a segment of a re-segmented media
                return clip_id in new_ids or (clip_id.rpartition("#")[0] in resegmented and "#" in clip_id)

            old_rows = [r for r in prev.clips.meta.to_pylist() if not superseded(r["id"])]
            replaced = np.array([r["faiss_id"] for r in prev.clips.meta.to_pylist() if superseded(r["id"])],
                                dtype=np.int64)
            index, info = prev.clips.index, dict(prev.clips.info)
            if len(replaced):
                index = faiss_index.remove(index, replaced)
            faiss_index.add(index, vectors, ids)
            if info["index_type"] == "flat" and index.ntotal >= 10 * FLAT_MAX_VECTORS:
                notes.append(f"{out} has grown to {index.ntotal} clips; a rebuild (without --add) would choose a "
                             "faster index type")
        else:
            old_rows, replaced = [], np.zeros(0, np.int64)
            index, info = _new_index(vectors, ids, index_type, budget, "clips")
        info["next_id"] = next_id + len(rows)
        lexicon_fingerprint = _reading_priors(model.lexicon, rows, old_rows, prev)
        all_rows = old_rows + rows
        texts = _texts_collection(net, all_rows, prev.texts if prev is not None else None, writer,
                                  index_type=None, budget=budget, progress=progress)
        clips_coll = Collection(index, pa.Table.from_pylist(all_rows, schema=CLIP_SCHEMA),
                                writer.token_files("clips"), info)
        history = (prev.info.get("history", []) if prev is not None else [])
        action = "add" if prev is not None else "build"
        meta_info = {
            "created": prev.info.get("created") if prev is not None else None,
            "checkpoint": {"path": checkpoint, "hash": model.hash},
            "lexicon": lexicon_fingerprint,  # the lexicon the clips' reading_prior belong to
            "readings": reader_info,  # where the clips' gloss readings come from (None: the model's gloss head)
            "dims": {"global": int(net.embed_dim), "token": int(net.token_dim)},
            "history": history + [{"action": action, "clips": len(rows), "failures": len(failures),
                                   "seconds": round(time.perf_counter() - t0, 2)}],
        }
        for key in ("created", "readings"):
            if meta_info[key] is None:
                del meta_info[key]
        for what, coll in (("clips", clips_coll), ("texts", texts)):
            tuning = (coll.info.get("tuning") or {}) if coll is not None else {}
            if tuning and not tuning.get("reached", True):
                notes.append(f"{what}: {coll.info.get('factory')} reaches recall@10 {tuning['recall_at_10']:.3f} at "
                             f"best (target {tuning['target']})")
        writer.commit(meta_info, clips_coll, texts)
    from slsearch.index.store import load_index

    return {**_summary(out, action, clips, len(rows), unchanged, len(replaced), failures, load_index(out), t0, notes),
            "clips_without_hands": len(without_hands)}


def _summary(out: Path, action: str, clips: list[Clip], added: int, unchanged: int, replaced: int,
             failures: dict[str, Failure], index: StoredIndex | None, t0: float,
             notes: list[str]) -> dict[str, Any]:
    info = index.info if index is not None else {}
    clip_info = info.get("clips") or {}
    return {
        "out": str(out), "action": action, "clips_seen": len(clips), "clips_added": added,
        "clips_unchanged": unchanged, "clips_replaced": replaced, "failures": len(failures),
        "failed": [{"path": f.path, "reason": f.line()} for f in failures.values()],
        "notes": notes,
        "clips_total": len(index.clips) if index is not None else 0,
        "texts_total": len(index.texts) if index is not None and index.texts is not None else 0,
        "index_type": clip_info.get("index_type"), "factory": clip_info.get("factory"),
        "search_params": clip_info.get("search_params"),
        "recall_at_10": (clip_info.get("tuning") or {}).get("recall_at_10"),
        "size_bytes": index.size_bytes() if index is not None else 0,
        "tokens": index.token_codec("clips") if index is not None else None,
        "token_store_bytes": index.token_store_bytes() if index is not None else 0,
        "checkpoint_hash": (info.get("checkpoint") or {}).get("hash"),
        "seconds": round(time.perf_counter() - t0, 2),
    }
