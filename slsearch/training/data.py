"""Training data: a manifest checked up front, its features loaded once into memory, and batches.

Every problem a manifest can have (missing files, empty sentences, clips shorter than the
temporal stride) is found here, before the first training step, and reported with the file.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from slsearch.data.manifest import VIDEO_EXTENSIONS, Clip, read_manifest
from slsearch.data.pose_files import hands_seen
from slsearch.data.poses import load_pose
from slsearch.errors import InputError, SlsearchError
from slsearch.eval.metrics import normalise_text
from slsearch.models.padding import pad
from slsearch.progress import Progress, track


def read_training_manifest(path: str | Path) -> list[Clip]:
    """Clips of a manifest, each with a readable file and a non-empty sentence."""
    path = Path(path)
    clips = read_manifest(path)
    for c in clips:
        if not c.text or not str(c.text).strip():
            raise InputError(path, f"clip {c.id!r} has an empty sentence (training needs text for every clip)")
        if c.path is None:
            raise InputError(path, f"clip {c.id!r} has no file path")
        if not Path(c.path).exists():
            raise InputError(c.path, f"file of clip {c.id!r} not found (listed in {path})")
    return clips


@dataclass
class FeatureSet:
    """Per-frame features of every clip of a manifest (float16), in memory or mapped from a file on disk
    (`load_features(..., spill_dir=...)`), and the texts."""

    ids: list[str]
    features: list[np.ndarray]  # (T_i, F) float16
    texts: list[str]
    glosses: list[list[int]] | None = None  # gloss ids (1-based, 0 is CTC's blank) per clip; [] = unknown
    without_hands: int = 0  # clips in which no frame shows a hand (they train on body and face alone)
    without_video: int = 0  # clips without video (pose files) where the model has an RGB stream: masked

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.shape[0] for f in self.features])


def gloss_vocabulary(clips: list[Clip]) -> list[str]:
    """The gloss types of a manifest's clips, sorted (empty when no clip has glosses)."""
    return sorted({g for c in clips if c.gloss for g in str(c.gloss).split()})


def gloss_ids(gloss: str | None, vocabulary: dict[str, int]) -> list[int]:
    """'MORGEN SONNE' -> [id, id] (1-based); a gloss outside the vocabulary makes the clip unknown ([])."""
    if not gloss:
        return []
    ids = [vocabulary.get(g, 0) for g in str(gloss).split()]
    return [] if 0 in ids else ids


class _FeatureFile:
    """Features written one clip after another to an unnamed file in `folder`, then mapped read-only: the
    page cache holds what the batches touch, not the process. An RGB stream's crops make a frame 18 kB
    (against 0.3 kB of pose features), so an archive's hours of video would not fit in memory otherwise.
    The file is unlinked as soon as it is mapped: it goes when the process does, whatever stops it."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.NamedTemporaryFile(dir=folder, prefix=".features-", suffix=".f16", delete=False)
        self.shapes: list[tuple[int, ...]] = []

    def add(self, f: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(f, dtype=np.float16).tobytes())
        self.shapes.append(f.shape)

    def views(self) -> list[np.ndarray]:
        self.file.close()
        path = Path(self.file.name)
        try:
            if not self.shapes or not path.stat().st_size:
                return [np.zeros(shape, np.float16) for shape in self.shapes]
            data = np.memmap(path, dtype=np.float16, mode="r")
        finally:
            path.unlink()
        out, at = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(data[at:at + n].reshape(shape))
            at += n
        return out


def load_features(clips: list[Clip], front_end, min_frames: int, source: str | Path,
                  progress: Progress | None = None, glosses: list[str] | None = None,
                  spill_dir: str | Path | None = None) -> FeatureSet:
    """Load each clip's pose once through the model's front end; refuse clips shorter than min_frames.
    With a gloss vocabulary, each clip's glosses come along as ids (for the gloss CTC loss). A model with an
    RGB stream also loads each video's crops; a manifest without any video is refused before loading.
    With `spill_dir`, the features go to a file there and are read back mapped (_FeatureFile)."""
    feats = []
    spill = _FeatureFile(Path(spill_dir)) if spill_dir is not None else None
    without_hands = without_video = 0
    crops = getattr(front_end, "needs_crops", False)  # any object with `prepare` will do without
    if crops:
        check_videos(clips, source)
    _extract_videos(clips, crops, source, progress)
    advance = track(progress, f"loading {Path(source).name}", len(clips))
    for c in clips:
        try:
            seq = load_pose(c, crops=crops)
            without_hands += not hands_seen(seq.data)
            without_video += crops and seq.crops is None
            f = front_end.prepare(seq if crops else seq.data)
        except SlsearchError:
            raise
        except (ValueError, OSError, KeyError) as e:
            raise InputError(c.path, f"cannot read clip {c.id!r}: {e}") from e
        if f.shape[0] < min_frames:
            raise InputError(c.path, f"clip {c.id!r} has {f.shape[0]} frames, fewer than the temporal "
                                     f"stride {min_frames} (listed in {source})")
        if spill is not None:
            spill.add(f)
        else:
            feats.append(f.astype(np.float16))
        advance(1)
    if spill is not None:
        feats = spill.views()
    gloss_table = None
    if glosses:
        vocabulary = {g: i + 1 for i, g in enumerate(glosses)}
        gloss_table = [gloss_ids(c.gloss, vocabulary) for c in clips]
    return FeatureSet([c.id for c in clips], feats, [str(c.text).strip() for c in clips], gloss_table, without_hands,
                      without_video)


def _extract_videos(clips: list[Clip], crops: bool, source: str | Path, progress: Progress | None) -> None:
    """Poses (and, for an RGB stream, crops) of the manifest's videos extracted into the cache by parallel
    workers before loading, which then reads them clip by clip; the first failure stops training, naming
    the clip (as loading would, after its turn)."""
    videos = [c for c in clips if has_video(c)]
    if not videos:
        return
    from slsearch.data.extract import extract_many

    advance = track(progress, f"extracting {Path(source).name}", len(videos))
    for r in extract_many(videos, crops=crops, on_result=lambda r: advance(1)):
        if r.error:
            raise InputError(source, f"clip {r.clip.id!r}: {r.error}")


def has_video(clip: Clip) -> bool:
    path = Path(clip.path)
    return path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS


def check_videos(clips: list[Clip], source: str | Path) -> None:
    """InputError when no clip is a video or frame folder: the RGB stream would learn from nothing."""
    if clips and not any(has_video(c) for c in clips):
        raise InputError(source, f"model.streams has rgb_crops, which needs videos, but none of its {len(clips)} "
                                 f"clips is a video or frame folder (e.g. {Path(clips[0].path).name})")


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding): shuffle, sort inside pools of 16 batches,
    cut, shuffle the batch order. Drops a last batch smaller than 2 (no negatives)."""
    perm = rng.permutation(len(lengths))
    pool = batch_size * 16
    batches = []
    for s in range(0, len(perm), pool):
        chunk = perm[s:s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


# A hard batch: groups of a seed clip and GROUP - 1 clips drawn among the seed's NEIGHBOURS nearest sentences
# (8 groups in a batch of 64: enough seeds that a batch still spans several topics).
NEIGHBOURS = 32
GROUP = 8


def text_neighbours(token_ids: list[list[int]], k: int = NEIGHBOURS, chunk: int = 512) -> np.ndarray:
    """Each sentence's k nearest others by TF-IDF cosine over the tokenizer's subword ids (any language, no
    word splitting) -> (N, k) indices, -1 where there are fewer. Sentences with the same words (cosine ~1:
    the same sentence, or its words reordered) are left out: they sign alike, so they are no negatives."""
    n = len(token_ids)
    rows = np.repeat(np.arange(n), [len(t) for t in token_ids])
    cols = np.concatenate([np.asarray(t, np.int64) for t in token_ids]) if n else np.zeros(0, np.int64)
    counts = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n, int(cols.max(initial=0)) + 1))
    counts.sum_duplicates()
    # no +1: a subword in every sentence (the end-of-sentence mark) weighs nothing
    idf = np.log((1 + n) / (1 + np.bincount(counts.indices, minlength=counts.shape[1])))
    x = counts.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    x = sp.diags(1 / np.maximum(norms, 1e-12)) @ x
    out = np.full((n, k), -1, np.int64)
    for s in range(0, n, chunk):  # a dense (chunk, N) block at a time keeps memory flat on large corpora
        sim = (x[s:s + chunk] @ x.T).toarray()
        sim[sim > 0.999] = -1.0  # itself and its same-word sentences
        take = min(k, n - 1)
        if take <= 0:
            break
        top = np.argpartition(-sim, take - 1, axis=1)[:, :take]
        order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        top[np.take_along_axis(sim, top, 1) <= 0] = -1  # nothing in common: no neighbour
        out[s:s + len(sim), :take] = top
    return out


def with_neighbour_batches(batches: list[np.ndarray], neighbours: np.ndarray, share: float,
                           rng: np.random.Generator, group: int = GROUP) -> list[np.ndarray]:
    """Replace a `share` of an epoch's batches by hard ones: a batch keeps len // group of its clips as seeds
    and fills up with group - 1 clips drawn among each seed's nearest sentences (no clip twice), so the
    contrastive losses must tell apart sentences that share most of their words (two weather reports that
    differ in a region or a number) rather than 64 unrelated ones. share 0 leaves the batches (and the rng)
    untouched."""
    if not share:
        return batches
    batches = list(batches)
    for b in rng.choice(len(batches), int(round(share * len(batches))), replace=False):
        batch = batches[b]
        seeds = batch[:max(1, len(batch) // group)]
        taken, seen = list(seeds), set(seeds.tolist())
        for seed in seeds:
            found = 0
            for c in rng.permutation(neighbours[seed][neighbours[seed] >= 0]):
                if found == group - 1 or len(taken) == len(batch):
                    break
                if c not in seen:
                    taken.append(c)
                    seen.add(c)
                    found += 1
        for c in batch[len(seeds):]:  # seeds short of neighbours: the batch's own clips fill it up
            if len(taken) == len(batch):
                break
            if c not in seen:
                taken.append(c)
                seen.add(c)
        batches[b] = np.asarray(taken, dtype=batch.dtype)
    return batches


def text_key(text: str) -> int:
    """A stable 63-bit key of a sentence (case and spacing ignored): clips with equal keys say the same, so
    the contrastive losses do not push them apart. Not Python's hash(): that differs between processes."""
    digest = hashlib.blake2b(normalise_text(text).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _stretched_length(T: int, factor: float, max_frames: int, min_frames: int) -> int:
    return int(np.clip(round(T * factor), min_frames, max_frames))


def _stretch(f: np.ndarray, factor: float, max_frames: int, min_frames: int) -> np.ndarray:
    """Resample frames (nearest) to len * factor, at most max_frames, at least min_frames."""
    T = f.shape[0]
    new_T = _stretched_length(T, factor, max_frames, min_frames)
    if new_T == T:
        return f
    idx = np.minimum((np.arange(new_T) * T / new_T).astype(int), T - 1)
    return f[idx]


def collate(data: FeatureSet, idx: np.ndarray, tokenizer, rng: np.random.Generator | None,
            max_frames: int, time_stretch: float, min_frames: int = 4,
            part: slice | None = None) -> dict[str, torch.Tensor]:
    """Batch `idx` -> model inputs; with `rng` (training) each clip's speed is varied by up to
    `time_stretch`. With `part` (distributed training) only the clips idx[part] are built, as the
    whole batch would build them: every clip still draws its stretch, and the frames are padded to
    the longest clip of the whole batch (batch norm sees the padding)."""
    feats, texts, glosses = [], [], []
    kept = range(len(idx))[part] if part is not None else None
    longest = 0
    for k, i in enumerate(idx):
        if kept is not None and k not in kept:
            factor = 1.0 + rng.uniform(-time_stretch, time_stretch) if (rng is not None and time_stretch) else 1.0
            longest = max(longest, _stretched_length(data.features[i].shape[0], factor, max_frames, min_frames))
            continue
        f = data.features[i].astype(np.float32)
        text = data.texts[i]
        gloss = data.glosses[i] if data.glosses is not None else []
        factor = 1.0 + rng.uniform(-time_stretch, time_stretch) if (rng is not None and time_stretch) else 1.0
        f = _stretch(f, factor, max_frames, min_frames)
        feats.append(f)
        texts.append(text)
        glosses.append(gloss)
    x, lengths = pad(feats)
    if x.shape[1] < longest:
        x = torch.nn.functional.pad(x, (0, 0, 0, longest - x.shape[1]))
    ids, mask = tokenizer(texts)
    batch = {"features": x, "lengths": lengths, "input_ids": ids, "attention_mask": mask,
             "text_keys": torch.tensor([text_key(t) for t in texts], dtype=torch.long)}
    if data.glosses is not None:
        # a clip without glosses keeps one padding target and length 0: CTC leaves it out
        targets, target_lengths = pad([np.asarray(g or [0], np.int64) for g in glosses], dtype=torch.long)
        batch["gloss_targets"] = targets
        batch["gloss_target_lengths"] = target_lengths * torch.tensor([bool(g) for g in glosses])
    return batch

