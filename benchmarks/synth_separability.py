"""Is the synthetic corpus learnable but not trivial? Without any training: demo sentences signed
twice (by two different synthetic signers) are looked up among a pool of clips by cosine similarity
of crude pooled features (`pose_to_features`, mean over thirds of the clip + std). Prints Recall@1/10
and the median rank of the partner clip, for a clean (difficulty 0) and the default (1) corpus.

    .venv/bin/python benchmarks/synth_separability.py [--pairs 60] [--singles 300]
"""

from __future__ import annotations

import argparse
import collections

import numpy as np

from slsearch.data.features import pose_to_features
from slsearch.data.synth import SynthSigner, demo_corpus


def pooled(pose: np.ndarray) -> np.ndarray:
    f = pose_to_features(pose)  # (T, D)
    T = len(f)
    thirds = [f[: T // 3], f[T // 3: 2 * T // 3], f[2 * T // 3:]]
    return np.concatenate([t.mean(0) for t in thirds] + [f.std(0)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--singles", type=int, default=300)
    args = ap.parse_args()
    by_text = collections.defaultdict(list)
    for c in demo_corpus():
        by_text[c.text].append(c)
    pairs = [v for v in by_text.values() if len(v) == 2][: args.pairs]
    singles = [v[0] for v in by_text.values() if len(v) == 1][: args.singles]
    pool = [c for v in pairs for c in v] + singles
    print("| difficulty | pool | partner R@1 | R@10 | median rank |")
    print("|---|---|---|---|---|")
    for difficulty in (0.0, 1.0):
        synth = SynthSigner(difficulty=difficulty)
        X = np.array([pooled(synth.sign(c.gloss, c.signer, c.id)) for c in pool])
        X = (X - X.mean(0)) / (X.std(0) + 1e-6)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        S = X @ X.T
        np.fill_diagonal(S, -np.inf)
        ranks = np.array([int((S[q] > S[q, t]).sum()) + 1
                          for i in range(0, 2 * len(pairs), 2) for q, t in ((i, i + 1), (i + 1, i))])
        print(f"| {difficulty} | {len(pool)} | {np.mean(ranks <= 1):.2f} | {np.mean(ranks <= 10):.2f} | "
              f"{np.median(ranks):.1f} |")


if __name__ == "__main__":
    main()
