"""V2T likelihood read with the int8 decoder against float32, on dev: R@1 after the stage for each weight of
the calibration grid, at several depths. The int8 log p(s | c) is set against the float32 sentence prior an
index stores, as search does; each query's candidates are read in one call.

    .venv/bin/python benchmarks/v2t_likelihood_reading.py --model RUN --dev dev.jsonl [--depths 20,10,5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from slsearch.eval.metrics import paired_recall_at_1
from slsearch.models.likelihood import sentence_loglik, sentence_prior
from slsearch.rank import RankingPipeline, load_retrieval_model
from slsearch.rank.likelihood_stage import WEIGHTS, LikelihoodStage
from slsearch.training.data import load_features, read_training_manifest
from slsearch.training.dev_eval import encode_dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--depths", default="20,10,5")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_retrieval_model(args.model)
    net = model.net
    dev = load_features(read_training_manifest(args.dev), net.video.front_end, net.temporal_stride, args.dev)
    clips, texts = encode_dev(net, dev.features, dev.texts)
    pipeline = RankingPipeline(model)
    stage, _ = pipeline.cascade(clips, texts, "fused" if pipeline.lexicon is not None else "cico", None, None)
    previous = stage["v2t"]
    priors = sentence_prior(net, texts.texts)
    print(f"dev V2T R@1 before the stage: {paired_recall_at_1(previous, 'v2t'):.2f}")
    for depth in (int(d) for d in args.depths.split(",")):
        reader = LikelihoodStage(depth=depth)
        rows, cols = reader.heads(previous, "v2t")
        for name, decoder in (("fp32", None), ("int8", model.fast_decoder)):
            ll = sentence_loglik(net, [clips.tokens[i] for i in rows], [texts.texts[j] for j in cols], None,
                                 decoder, depth)
            raw = np.full(previous.shape, np.nan, np.float32)
            raw[rows, cols] = ll - priors[cols]
            stats = {"mean": float(np.nanmean(raw)), "std": float(np.nanstd(raw))}
            by_weight = []
            for w in WEIGHTS[1:]:
                reader.fusion["v2t"] = {**stats, "weight": w}
                by_weight.append(f"{w:g}: {paired_recall_at_1(reader.combine(previous, raw, 'v2t'), 'v2t'):.2f}")
            print(f"depth {depth} {name}  " + "  ".join(by_weight), flush=True)


if __name__ == "__main__":
    main()
