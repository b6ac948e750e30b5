"""Translation quality of one checkpoint under several decoding settings (pick them on dev, not test).

    .venv/bin/python benchmarks/decode_sweep.py --model runs/NAME-slt --manifest dev.jsonl \
        --settings 1.0:0,1.0:3,1.4:2 [--beam 4]

Each setting is LENGTH_PENALTY:NO_REPEAT_NGRAM. Prints BLEU-1..4, chrF, ROUGE-L and seconds per
setting; the best BLEU-4 is the one to write into the recipe's [decode] section.
"""

from __future__ import annotations

import argparse
import json

from slsearch.eval.translation import evaluate_translation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--settings", default="1.0:0,1.0:3,1.0:2,1.4:0,1.4:2,1.4:3,2.0:2")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="one JSON line per setting")
    args = ap.parse_args()
    for item in args.settings.split(","):
        lp, nr = item.split(":")
        r = evaluate_translation(args.model, args.manifest, beam=args.beam, length_penalty=float(lp),
                                 no_repeat_ngram=int(nr), batch_size=32)
        m = {k: round(v, 2) for k, v in r["metrics"].items()}
        if args.json:
            print(json.dumps({"length_penalty": float(lp), "no_repeat_ngram": int(nr), "beam": args.beam,
                              "checkpoint": r["checkpoint"], "seconds": r["seconds"], **m}), flush=True)
        else:
            print(f"length penalty {lp:>4}  no-repeat {nr}  " + "  ".join(f"{k} {v:6.2f}" for k, v in m.items())
                  + f"  ({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
