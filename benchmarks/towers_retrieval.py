"""Retrieval quality of a trained checkpoint on a test manifest: global only, CiCo dense, CiCo re-rank.

    .venv/bin/python benchmarks/towers_retrieval.py --model runs/NAME --manifest test.jsonl [--rerank 100]

Paper protocol (only the paired clip/sentence counts), both directions, R@1/5/10 and MedR. The
re-rank row is what `slsearch query` does: the global-vector top-N, re-ordered by the CiCo score
(items outside the top-N keep their global order behind it). Prints a table and, with --json, a
JSON line with every number, the checkpoint hash and the training minutes from train_log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from slsearch import encode_texts, encode_videos, load_model
from slsearch.data.manifest import read_manifest
from slsearch.models.similarity import global_similarity
from slsearch.training.dev_eval import cico_matrix, recall_metrics


def rerank(global_scores: torch.Tensor, fine: torch.Tensor, n: int) -> torch.Tensor:
    """(Nv, Nt) scores -> V2T-oriented scores where each row's global top-n is ordered by `fine`.

    Scores live in [-1, 1], so +10 lifts the candidates above every non-candidate."""
    n = min(n, global_scores.shape[1])
    top = global_scores.topk(n, dim=1).indices
    cand = torch.zeros_like(global_scores, dtype=torch.bool).scatter_(1, top, True)
    return torch.where(cand, fine + 10.0, global_scores - 10.0)


def evaluate(model_dir: str, manifest: str, n_rerank: int = 100) -> dict:
    model = load_model(model_dir)
    clips = read_manifest(manifest)
    t0 = time.perf_counter()
    v = encode_videos(model, clips, batch_size=64, progress=True)
    t = encode_texts(model, [c.text for c in clips])
    encode_s = time.perf_counter() - t0
    with torch.no_grad():
        g = global_similarity(v.vectors, t.vectors)
        fine = cico_matrix(v, t, model.config.cico_temperature)
    rows = {
        "global": recall_metrics(g, ""),
        "cico_dense": recall_metrics(fine, ""),
        # each direction re-ranks its own query's top-N
        f"cico_rerank{n_rerank}": {
            **{k: x for k, x in recall_metrics(rerank(g, fine, n_rerank), "").items() if k.startswith("v2t")},
            **{k: x for k, x in recall_metrics(rerank(g.T, fine.T, n_rerank).T, "").items() if k.startswith("t2v")},
        },
    }
    log = Path(model_dir) / "train_log.jsonl"
    epochs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {"model": model_dir, "checkpoint_hash": model.checkpoint_hash, "manifest": manifest, "clips": len(clips),
            "best_epoch": cfg.get("best_epoch"), "epochs_run": len(epochs),
            "train_minutes": epochs[-1]["train_minutes"] if epochs else None, "encode_seconds": encode_s,
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--rerank", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = evaluate(args.model, args.manifest, args.rerank)
    from rich.table import Table

    from slsearch.console import console

    table = Table(title=f"{res['model']} on {res['manifest']} ({res['clips']} clips, paper protocol, "
                        f"{res['train_minutes'] or 0:.1f} training minutes)")
    cols = ["t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MedR"]
    table.add_column("score", no_wrap=True)
    for c in cols:
        table.add_column(c.upper().replace("_R@", " R@").replace("_MEDR", " MedR"), justify="right")
    for name, m in res["rows"].items():
        table.add_row(name, *[f"{m[c]:.1f}" for c in cols])
    console.print(table)
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
