"""Corpora for the synthetic signer and `synthesize_corpus`, which renders one to disk.

- "demo": the built-in German weather-report corpus (weather.py), shipped with the package.
- "phoenix": SynPhoenix, the real PHOENIX-2014T sentences, glosses, signers and clip lengths
  from ../shared/data/phoenix14t, signed by the synthetic signer.
- any manifest FILE with a gloss column (e.g. ../shared/data/csl_daily/train.jsonl): the same.

Every clip is rendered from its own seed (corpus seed + clip id), so the output does not depend on
the number of workers or the order of work.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from slsearch.data.manifest import Clip, read_manifest, write_manifest
from slsearch.data.pose_files import save_pose_npz
from slsearch.data.synth.lexicon import Lexicon, stable_seed
from slsearch.data.synth.noise import apply_detection_noise
from slsearch.data.synth.sentence import BASE_FPS, Variation, sign_sentence
from slsearch.data.synth.signer import Signer
from slsearch.data.synth.weather import weather_sentences
from slsearch.errors import InputError, SlsearchError
from slsearch.progress import Progress, track

SPLITS = ("train", "dev", "test")
DEMO_SENTENCES = 2200  # distinct sentences of the demo corpus
DEMO_SIGNERS = 8
DEMO_REPEAT = 0.15  # share of demo sentences signed a second time by another signer
PHOENIX_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "phoenix14t"


def demo_corpus(n_sentences: int = DEMO_SENTENCES, n_signers: int = DEMO_SIGNERS, seed: int = 0) -> list[Clip]:
    """The built-in weather corpus: ~80/10/10 train/dev/test by sentence, several signers, some
    sentences signed twice (by different signers, in the same split)."""
    rng = np.random.default_rng(stable_seed("demo-corpus", seed))
    signers = [f"synth{i + 1:02d}" for i in range(n_signers)]
    clips: list[Clip] = []
    for i, (text, gloss) in enumerate(weather_sentences(n_sentences, seed)):
        r = stable_seed("split", text) % 100
        split = "train" if r < 80 else "dev" if r < 90 else "test"
        who = rng.permutation(n_signers)[: 2 if rng.random() < DEMO_REPEAT else 1]
        for k, s in enumerate(who):
            clips.append(Clip(id=f"demo-{i:05d}-{k}", path=None, text=text, gloss=gloss, split=split,
                              signer=signers[int(s)]))
    return clips


def phoenix_corpus(root: str | Path = PHOENIX_DIR, splits: Iterable[str] = SPLITS) -> list[Clip]:
    """SynPhoenix: PHOENIX-2014T rows (text_de, gloss, signer, num_frames) from root/{split}.jsonl."""
    root = Path(root)
    clips: list[Clip] = []
    for split in splits:
        path = root / f"{split}.jsonl"
        if not path.exists():
            raise InputError(path, "PHOENIX-2014T manifest not found (SynPhoenix reads ../shared/data/phoenix14t)")
        clips.extend(manifest_corpus(path, default_split=split))
    return clips


def manifest_corpus(path: str | Path, default_split: str = "train") -> list[Clip]:
    """Any manifest whose rows have glosses; rows without a gloss are left out."""
    path = Path(path)
    clips = [c for c in read_manifest(path) if c.gloss]
    if not clips:
        raise InputError(path, "no row has a gloss column: the synthetic signer signs glosses")
    for c in clips:
        c.split = c.split or default_split
        c.signer = c.signer or "synth01"
        c.path = None
        c.extra.pop("frames_glob", None)  # points at real video frames the synthetic clip does not have
    return clips


def load_corpus(corpus: str | Path, splits: Iterable[str] | None = None) -> list[Clip]:
    """'demo', 'phoenix' or a manifest path -> clips (path None), filtered to `splits`."""
    wanted = tuple(splits) if splits else None
    if str(corpus) == "demo":
        clips = demo_corpus()
    elif str(corpus) == "phoenix":
        clips = phoenix_corpus(splits=wanted or SPLITS)
    else:
        path = Path(corpus)
        if not path.exists():
            raise InputError(path, "corpus is neither 'demo', 'phoenix' nor an existing manifest")
        if path.is_dir():  # a folder like csl_daily/ holding train/dev/test.jsonl
            files = [path / f"{s}.jsonl" for s in (wanted or SPLITS) if (path / f"{s}.jsonl").exists()]
            if not files:
                raise InputError(path, "folder has no train/dev/test.jsonl manifest")
            clips = [c for f in files for c in manifest_corpus(f, default_split=f.stem)]
        else:
            clips = manifest_corpus(path)
    if wanted:
        clips = [c for c in clips if c.split in wanted]
    if not clips:
        raise SlsearchError(f"corpus {corpus} has no clips in split(s) {', '.join(wanted or SPLITS)}")
    return clips


# --- rendering ---------------------------------------------------------------------------------------

class SynthSigner:
    """Glosses -> noisy pose, with the lexicon and signers cached (one per worker process)."""

    def __init__(self, seed: int = 0, lexicon_seed: int = 0, difficulty: float = 1.0, fps: float = BASE_FPS):
        self.seed, self.difficulty, self.fps = seed, difficulty, fps
        self.lexicon = Lexicon(lexicon_seed)
        self.variation = Variation().scaled(min(max(difficulty, 0.0), 2.0))
        self._signers: dict[str, Signer] = {}

    def signer(self, name: str) -> Signer:
        if name not in self._signers:
            self._signers[name] = Signer.from_name(name, self.seed)
        return self._signers[name]

    def sign(self, gloss: str, signer: str, clip_id: str, num_frames: int | None = None) -> np.ndarray:
        """(T, 543, 3) float32 pose of one clip, NaN where the virtual detector missed."""
        rng = np.random.default_rng(stable_seed(self.seed, "clip", clip_id))
        clean = sign_sentence(gloss.split(), self.signer(signer), self.lexicon, rng, num_frames=num_frames,
                              fps=self.fps, variation=self.variation)
        return apply_detection_noise(clean, rng, self.difficulty)


_WORKER: SynthSigner | None = None


def _init_worker(seed: int, lexicon_seed: int, difficulty: float) -> None:
    global _WORKER
    _WORKER = SynthSigner(seed, lexicon_seed, difficulty)


def _render_one(job: tuple[str, str, str, int | None, str]) -> int:
    clip_id, gloss, signer, num_frames, out = job
    assert _WORKER is not None
    pose = _WORKER.sign(gloss, signer, clip_id, num_frames)
    save_pose_npz(out, pose, _WORKER.fps)
    return len(pose)


def _safe_name(clip_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip_id)


def synthesize_corpus(corpus: str | Path, out_dir: str | Path, splits: Iterable[str] | None = None,
                      limit: int | None = None, seed: int = 0, difficulty: float = 1.0, workers: int | None = None,
                      lexicon_seed: int = 0, progress: Progress | None = None) -> dict:
    """Render a corpus to out_dir: poses/<split>/<id>.npz, manifest.jsonl (all clips) and
    <split>.jsonl per split. `limit` keeps the first N clips of each split. `progress` hears each clip
    rendered (None: silent).

    Returns a summary: clips, frames, seconds, clips_per_second, manifest, splits.
    """
    if difficulty < 0:
        raise SlsearchError(f"difficulty must be >= 0, got {difficulty}")
    out_dir = Path(out_dir)
    clips = load_corpus(corpus, splits)
    if limit is not None:
        kept, seen = [], {}
        for c in clips:
            seen[c.split] = seen.get(c.split, 0) + 1
            if seen[c.split] <= limit:
                kept.append(c)
        clips = kept
    jobs = []
    for c in clips:
        c.path = out_dir / "poses" / str(c.split) / f"{_safe_name(c.id)}.npz"
        jobs.append((c.id, c.gloss, c.signer, c.num_frames, str(c.path)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    start = time.perf_counter()
    frames = _run_jobs(jobs, workers, seed, lexicon_seed, difficulty, progress)
    for c, n in zip(clips, frames):
        c.num_frames = n
    seconds = time.perf_counter() - start
    manifest = write_manifest(clips, out_dir / "manifest.jsonl")
    by_split: dict[str, int] = {}
    for s in sorted({c.split for c in clips}):
        part = [c for c in clips if c.split == s]
        write_manifest(part, out_dir / f"{s}.jsonl")
        by_split[s] = len(part)
    return {"corpus": str(corpus), "clips": len(clips), "frames": int(sum(frames)), "seconds": round(seconds, 2),
            "clips_per_second": round(len(clips) / max(seconds, 1e-9), 1), "workers": workers,
            "manifest": str(manifest), "splits": by_split}


def _run_jobs(jobs: list, workers: int, seed: int, lexicon_seed: int, difficulty: float,
              progress: Progress | None) -> list[int]:
    """Render all jobs (in order of `jobs`), in a process pool when workers > 1."""
    frames = [0] * len(jobs)
    advance = track(progress, "synthesising", len(jobs))
    t0 = time.perf_counter()

    def tick(done: int) -> None:
        advance(1, f"{done / max(time.perf_counter() - t0, 1e-9):.0f} clips/s")

    if workers == 1:
        _init_worker(seed, lexicon_seed, difficulty)
        for i, job in enumerate(jobs):
            frames[i] = _render_one(job)
            tick(i + 1)
        return frames
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(seed, lexicon_seed, difficulty)) as pool:
        for i, n in enumerate(pool.imap(_render_one, jobs, chunksize=8)):
            frames[i] = n
            tick(i + 1)
    return frames
