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

from slsearch.data.manifest import read_manifest
from slsearch.encode import encode_texts, encode_videos
from slsearch.rank import ClipSide, RankingPipeline, TextSide, load_retrieval_model
from slsearch.training.dev_eval import recall_metrics


def by_direction(scores: dict) -> dict[str, float]:
    """R@K with each direction ranked by its own (videos, texts) matrix."""
    return {**{k: x for k, x in recall_metrics(scores["t2v"], "").items() if k.startswith("t2v")},
            **{k: x for k, x in recall_metrics(scores["v2t"], "").items() if k.startswith("v2t")}}


def evaluate(model_dir: str, manifest: str, n_rerank: int = 100) -> dict:
    model = load_retrieval_model(model_dir)
    pipeline = RankingPipeline(model)
    clips = read_manifest(manifest)
    t0 = time.perf_counter()
    v = encode_videos(model.net, clips, batch_size=64)
    t = encode_texts(model.net, [c.text for c in clips])
    encode_s = time.perf_counter() - t0
    videos = ClipSide(v.tokens, v.readings, vectors=v.vectors)
    texts = TextSide([c.text for c in clips], t.tokens, vectors=t.vectors)
    rows = {"global": by_direction(pipeline.score_matrix(videos, texts, "global")),
            "cico_dense": by_direction(pipeline.score_matrix(videos, texts, "cico")),
            f"cico_rerank{n_rerank}": by_direction(pipeline.score_matrix(videos, texts, "cico", n_rerank))}
    if pipeline.lexicon is not None and v.readings is not None:
        rows["lexical_dense"] = by_direction(pipeline.score_matrix(videos, texts, "lexical"))
        rows["fused_dense"] = by_direction(pipeline.score_matrix(videos, texts, "fused"))
        rows[f"fused_rerank{n_rerank}"] = by_direction(pipeline.score_matrix(videos, texts, "fused", n_rerank))
    likelihood_s = None
    if pipeline.likelihood is not None:
        # what `slsearch query` ranks by: the global top-N re-ranked by CiCo (+ lexicon), then the
        # decoder likelihood on each query's first `depth`
        t0 = time.perf_counter()
        rows[f"full_rerank{n_rerank}"] = by_direction(pipeline.score_matrix(videos, texts, "full", n_rerank))
        likelihood_s = time.perf_counter() - t0
    log = Path(model_dir) / "train_log.jsonl"
    epochs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {"model": model_dir, "checkpoint_hash": model.hash, "manifest": manifest, "clips": len(clips),
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
