"""Retrieval quality of a trained checkpoint on a test manifest: global only, CiCo dense, CiCo re-rank,
for a model with a gloss lexicon the lexicon alone and CiCo + lexicon (dense and re-ranked), and for
a model with a decoder-likelihood stage the full re-rank (`full_rerankN`: what search ranks by).

    .venv/bin/python benchmarks/towers_retrieval.py --model runs/NAME --manifest test.jsonl [--rerank 100]

Paper protocol (only the paired clip/sentence counts), both directions, R@1/5/10 and MedR. The
re-rank rows are what `slsearch query` does: the global-vector top-N, re-ordered by the CiCo score
or, for a model with a gloss lexicon, by the fused score (items outside the top-N keep their global
order behind it). Prints a table and, with --json, a
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

    `fine` is CiCo in [-1, 1] or a fused score (standardised units): the candidates are lifted
    above every non-candidate by more than either range."""
    n = min(n, global_scores.shape[1])
    top = global_scores.topk(n, dim=1).indices
    cand = torch.zeros_like(global_scores, dtype=torch.bool).scatter_(1, top, True)
    lift = float(fine.abs().max()) + 10.0
    return torch.where(cand, fine + lift, global_scores - lift)


def by_direction(t2v: torch.Tensor, v2t: torch.Tensor) -> dict[str, float]:
    """R@K with one (videos, texts) matrix ranking each direction."""
    return {**{k: x for k, x in recall_metrics(t2v, "").items() if k.startswith("t2v")},
            **{k: x for k, x in recall_metrics(v2t, "").items() if k.startswith("v2t")}}


def reranked(g: torch.Tensor, t2v: torch.Tensor, v2t: torch.Tensor, n: int) -> dict[str, float]:
    """Each direction re-ranks its own query's global top-n with its score."""
    return by_direction(rerank(g.T, t2v.T, n).T, rerank(g, v2t, n))


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
        f"cico_rerank{n_rerank}": reranked(g, fine, fine, n_rerank),
    }
    likelihood_s = None
    lex = model.lexicon
    if lex is not None and lex.fusion and v.readings is not None:
        texts = [c.text for c in clips]
        lexical = {d: torch.from_numpy(lex.lexical_matrix(v.readings, texts, d)) for d in ("t2v", "v2t")}
        fused = {d: torch.from_numpy(lex.fuse(fine.numpy(), lexical[d].numpy(), d)) for d in ("t2v", "v2t")}
        rows["lexical_dense"] = by_direction(lexical["t2v"], lexical["v2t"])
        rows["fused_dense"] = by_direction(fused["t2v"], fused["v2t"])
        rows[f"fused_rerank{n_rerank}"] = reranked(g, fused["t2v"], fused["v2t"], n_rerank)
    else:
        fused = {"t2v": fine, "v2t": fine}
    if model.likelihood is not None and model.likelihood.fusion:
        # what `slsearch query` ranks by: the stage-2 re-rank of the global top-N, then the decoder
        # likelihood on each query's first `depth`
        texts = [c.text for c in clips]
        stage2 = {"t2v": rerank(g.T, fused["t2v"].T, n_rerank).T, "v2t": rerank(g, fused["v2t"], n_rerank)}
        t0 = time.perf_counter()
        full = {d: torch.from_numpy(model.likelihood.rerank_matrix(model, stage2[d].numpy(), v.tokens, texts, d,
                                                                   progress=True)) for d in ("t2v", "v2t")}
        likelihood_s = time.perf_counter() - t0
        rows[f"full_rerank{n_rerank}"] = by_direction(full["t2v"], full["v2t"])
    log = Path(model_dir) / "train_log.jsonl"
    epochs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {"model": model_dir, "checkpoint_hash": model.checkpoint_hash, "manifest": manifest, "clips": len(clips),
            "best_epoch": cfg.get("best_epoch"), "epochs_run": len(epochs),
            "train_minutes": epochs[-1]["train_minutes"] if epochs else None, "encode_seconds": encode_s,
            "likelihood_seconds": likelihood_s, "rows": rows}


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
