"""Small class-structured pose data for tower/training tests (no dependency on the synth module).

Each "gloss" is a distinct right-hand trajectory and hand shape lasting 12 frames; a clip signs a
sequence of 2-3 glosses and its sentence is the sequence's words. Clips differ by noise, speed
and the signer's position in the frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slsearch.data import layout as L
from slsearch.data.manifest import Clip, write_manifest

WORDS = ["regen", "sonne", "wind", "schnee", "nebel", "gewitter", "morgen", "heute", "nord", "sued"]
FRAMES_PER_GLOSS = 12


def gloss_pose(gloss: int, n: int, rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """(n, 543, 3) frames of one gloss: wrist on a gloss-specific Lissajous path, fixed hand shape."""
    g = np.random.default_rng(1000 + gloss)  # the gloss's identity, same in every clip
    fx, fy, phase = g.uniform(0.5, 2.0), g.uniform(0.5, 2.0), g.uniform(0, 2 * np.pi)
    base = g.uniform(-0.15, 0.15, 2)
    shape = g.normal(0, 0.03, (L.N_HAND, 2))
    t = np.linspace(0, 1, n)
    wrist = centre + base + 0.1 * np.stack([np.sin(2 * np.pi * fx * t + phase), np.cos(2 * np.pi * fy * t)], 1)
    pose = np.full((n, L.N_LANDMARKS, 3), np.nan, np.float32)
    pose[:, L.LEFT_SHOULDER, :2] = centre + [0.1, 0.1]
    pose[:, L.RIGHT_SHOULDER, :2] = centre + [-0.1, 0.1]
    pose[:, L.NOSE, :2] = centre + [0.0, -0.05]
    pose[:, L.RIGHT_WRIST_POSE, :2] = wrist
    hand = wrist[:, None, :] + shape[None] + rng.normal(0, 0.003, (n, L.N_HAND, 2))
    hand[:, 0] = wrist
    pose[:, L.RIGHT_HAND, :2] = hand
    pose[:, L.RIGHT_HAND, 2] = 0.0
    pose[:, [L.LEFT_SHOULDER, L.RIGHT_SHOULDER, L.NOSE, L.RIGHT_WRIST_POSE], 2] = 0.0
    return pose


def make_clip(glosses: list[int], rng: np.random.Generator) -> np.ndarray:
    centre = np.array([0.5, 0.5]) + rng.normal(0, 0.02, 2)
    parts = [gloss_pose(g, int(FRAMES_PER_GLOSS * rng.uniform(0.85, 1.15)), rng, centre) for g in glosses]
    return np.concatenate(parts, 0)


def make_corpus(folder: Path, n_clips: int, seed: int = 0, n_glosses: int = len(WORDS),
                name: str = "train") -> Path:
    """Write n_clips .npz poses and a JSONL manifest into `folder`; returns the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clips, seen = [], set()
    while len(clips) < n_clips:
        glosses = tuple(rng.choice(n_glosses, size=rng.integers(2, 4), replace=False).tolist())
        if glosses in seen:  # distinct sentences: paired retrieval has one right answer
            continue
        seen.add(glosses)
        cid = f"{name}{len(clips):03d}"
        path = folder / f"{cid}.npz"
        np.savez(path, pose=make_clip(list(glosses), rng), fps=np.float32(25.0))
        clips.append(Clip(id=cid, path=path, text=" ".join(WORDS[g] for g in glosses),
                          gloss=" ".join(f"G{g}" for g in glosses), split=name))
    manifest = folder / f"{name}.jsonl"
    write_manifest(clips, manifest)
    return manifest
