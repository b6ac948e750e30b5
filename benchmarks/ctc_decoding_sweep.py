"""WER of one gloss reader under many CTC decodings, the network run once: greedy, beam search, and beam search
with the gloss bigram LM for every (weight, bonus) of a grid. A negative bonus is a penalty per gloss, against
insertions. For picking `eval --wer`'s --lm-weight / --lm-bonus on dev (each setting read again with
`slsearch eval --wer` gives the same numbers: its decoding is this one).

    .venv/bin/python benchmarks/ctc_decoding_sweep.py --model RUN --manifest dev.jsonl --lm train.jsonl \
        [--weights 0.05,0.1,0.2] [--bonuses -3,-2,-1,0] [--branch visual] [--json-out F]

--model: a recogniser run or a retrieval checkpoint with a gloss head. --branch visual reads a recogniser's
visual branch (the shared classifier on the visual module) instead of what it reads (the textual branch).
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from slsearch.data.manifest import read_manifest
from slsearch.data.poses import load_pose
from slsearch.eval.recognition import word_errors
from slsearch.models.ctc import greedy, log_softmax, prefix_beam_search
from slsearch.models.padding import pad
from slsearch.recognition import _front_end, load_gloss_lm, load_gloss_reader


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, help="clips with a gloss column (dev to pick, test once)")
    ap.add_argument("--lm", required=True, help="the training manifest (its glosses train the bigram LM)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--weights", default="0.05,0.1,0.2,0.3,0.5")
    ap.add_argument("--bonuses", default="-4,-3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1")
    ap.add_argument("--branch", choices=("read", "visual"), default="read")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_gloss_reader(a.model).eval()
    key = "visual_logits" if a.branch == "visual" else "gloss_logits"
    clips = read_manifest(a.manifest)
    front_end = _front_end(model)
    logps = []
    with torch.no_grad():
        for s in range(0, len(clips), 32):
            x, lengths = pad([front_end.prepare(load_pose(c).data) for c in clips[s:s + 32]])
            r = model.encode_video(x, lengths)
            logits, mask = r[key].float().numpy(), r["mask"].numpy()
            logps += [log_softmax(logits[i, mask[i]]) for i in range(len(logits))]
    refs = [" ".join(c.gloss.split()) for c in clips]
    vocabulary = list(model.config.glosses)

    def wer(labels: list[list[int]]) -> dict:
        w = word_errors(refs, [" ".join(vocabulary[c - 1] for c in h) for h in labels])
        return {k: w[k] for k in ("wer", "substitutions", "del_rate", "ins_rate")}

    out = {"greedy": wer([greedy(lp) for lp in logps]),
           f"beam{a.beam}": wer([prefix_beam_search(lp, a.beam)[0] for lp in logps])}
    lm = load_gloss_lm(a.model, model, a.lm, 1.0)
    for w, b in itertools.product(floats(a.weights), floats(a.bonuses)):
        out[f"beam{a.beam} lm {w:g} bonus {b:g}"] = wer(
            [prefix_beam_search(lp, a.beam, lm=lm, lm_weight=w, lm_bonus=b)[0] for lp in logps])
    for name, m in sorted(out.items(), key=lambda kv: kv[1]["wer"]):
        print(f"{name:28s} WER {m['wer']:6.2f}  SUB {m['substitutions']:4d}  DEL {m['del_rate']:5.2f}  "
              f"INS {m['ins_rate']:5.2f}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"model": a.model, "manifest": a.manifest, "branch": a.branch, "results": out}, f, indent=2)


if __name__ == "__main__":
    main()
