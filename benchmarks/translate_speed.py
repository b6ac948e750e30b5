"""Beam search speed: the uncached loop (the whole prefix every step, as before issue 15) against the
key/value cache (`beam_search(use_cache=False)` vs the default).

    .venv/bin/python benchmarks/translate_speed.py --model /work/baseline/demo/model \
        --manifest /work/baseline/demo/corpus/test.jsonl [--beam 4] [--rounds 3] [--batch-size 16]

The clips' features and video encodings are made once, outside the timing (both paths share
them); then, for each round and batch, both beam searches run back to back, in alternating order,
so that load on the machine falls on both alike. Prints clips/s of each, the speed-up and whether
the hypotheses are identical (same token ids, scores within 1e-4). Decoding settings not given
come from the checkpoint's [decode], as in `translate`.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from slsearch.data.manifest import read_manifest
from slsearch.encode import prepare_videos
from slsearch.models.checkpoint import load_model
from slsearch.models.padding import pad
from slsearch.models.translator import DecodeConfig, beam_search


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16, help="clips a batch (translate's default)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the clips, each path once a batch")
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (0 = all)")
    ap.add_argument("--length-penalty", type=float, default=None)
    ap.add_argument("--no-repeat-ngram", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model(args.model).to(device).eval()
    recipe = json.loads((Path(args.model) / "config.json").read_text()).get("recipe", {})
    settings = DecodeConfig.from_dict(recipe.get("decode")).with_overrides(  # the checkpoint's [decode]
        beam=args.beam, length_penalty=args.length_penalty, no_repeat_ngram=args.no_repeat_ngram)
    clips = read_manifest(args.manifest)
    if args.limit:
        clips = clips[: args.limit]
    tok = model.tokenizer
    t0 = time.perf_counter()
    feats = prepare_videos(model, clips)
    batches = []
    for start in range(0, len(feats), args.batch_size):  # as translate() batches them
        chunk = feats[start:start + args.batch_size]
        x, lengths = pad(chunk)
        v = model.encode_video(x.to(device), lengths.to(device))
        batches.append((v["tokens"], v["mask"]))
    _sync(device)
    prep_s = time.perf_counter() - t0

    kw = dict(beam=settings.beam, max_len=model.config.max_text_tokens, length_penalty=settings.length_penalty,
              no_repeat_ngram=settings.no_repeat_ngram)
    paths = {"old": partial(beam_search, use_cache=False), "new": beam_search}
    seconds = {"old": 0.0, "new": 0.0}
    outputs: dict[str, list] = {"old": [], "new": []}
    for r in range(args.rounds):
        for b, (mem, mask) in enumerate(batches):
            order = ("old", "new") if (r + b) % 2 == 0 else ("new", "old")
            for name in order:
                _sync(device)
                t = time.perf_counter()
                hyps = paths[name](model.decoder, mem, mask, tok.bos_id, tok.eos_id, **kw)
                _sync(device)
                seconds[name] += time.perf_counter() - t
                if r == 0:
                    outputs[name].extend(hyps)

    n = len(clips) * args.rounds
    same_ids = [a[0] for a in outputs["old"]] == [b[0] for b in outputs["new"]]
    max_diff = max(abs(a[1] - b[1]) for a, b in zip(outputs["old"], outputs["new"]))
    mean_len = sum(len(h[0]) for h in outputs["new"]) / len(outputs["new"])
    summary = {"clips": len(clips), "rounds": args.rounds, "beam": settings.beam, "batch_size": args.batch_size,
               "length_penalty": settings.length_penalty, "no_repeat_ngram": settings.no_repeat_ngram,
               "device": str(device), "threads": torch.get_num_threads(), "mean_tokens": round(mean_len, 1),
               "prepare_and_encode_s": round(prep_s, 2),
               "old_s": round(seconds["old"], 2), "new_s": round(seconds["new"], 2),
               "old_clips_per_s": round(n / seconds["old"], 1), "new_clips_per_s": round(n / seconds["new"], 1),
               "speedup": round(seconds["old"] / seconds["new"], 2),
               "identical_ids": same_ids, "max_score_diff": float(f"{max_diff:.2e}"),
               "identical": same_ids and max_diff <= 1e-4}
    print(f"{len(clips)} clips x {args.rounds} rounds, beam {settings.beam}, batch {args.batch_size}, "
          f"length penalty {settings.length_penalty}, no-repeat {settings.no_repeat_ngram}, {device}, "
          f"{torch.get_num_threads()} threads; features + video encoder {prep_s:.1f} s (not timed below)")
    print(f"old (uncached): {summary['old_clips_per_s']:7.1f} clips/s  ({seconds['old']:.1f} s)")
    print(f"new (kv cache): {summary['new_clips_per_s']:7.1f} clips/s  ({seconds['new']:.1f} s)")
    print(f"speed-up {summary['speedup']:.2f}x; identical hypotheses: {summary['identical']} "
          f"(token ids {'equal' if same_ids else 'DIFFER'}, max score difference {max_diff:.1e}); "
          f"mean {mean_len:.1f} tokens a hypothesis")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
