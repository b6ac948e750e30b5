"""CVT-SLR ablation (issue 17): dev and test WER with DEL / INS of

    1. the retrieval model's gloss CTC side head, greedy
    2. the same, CTC prefix beam search (beam 5), and with the gloss bigram LM (weight and per-gloss
       bonus picked on dev)
    3. CVT-SLR without the pretrained VAE and without the alignment loss
    4. CVT-SLR with the pretrained VAE
    5. CVT-SLR with both (the full model)

Rows 3-5 are trained with `slsearch train --recipe recognizer` (one after the other, `nice -n 5`), unless
their run folder is already there; each is read greedy, beam 5, and beam 5 + LM (weight picked on dev).

    .venv/bin/python benchmarks/cvt_slr_ablation.py --corpus /work/newdemo/corpus --retrieval /work/newdemo/model \
        --runs runs/cvt_ablation --epochs 30 --out benchmarks/cvt_slr_ablation.json
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from slsearch.eval.recognition import evaluate_wer

ROWS = {
    "3 CVT-SLR w/o VAE, w/o align": ["recognizer.pretrained_vae=false", "recognizer.align_weight=0"],
    "4 CVT-SLR w/ VAE": ["recognizer.align_weight=0"],
    "5 CVT-SLR w/ VAE + align": [],
    # the full model again, its visual module started from the retrieval model (--init)
    "5init CVT-SLR w/ VAE + align, --init retrieval": ["--init"],
}
LM_GRID = [(w, b) for w in (0.1, 0.3, 0.5, 1.0) for b in (0.0, 1.0, 2.0)]  # (--lm-weight, --lm-bonus)

p = argparse.ArgumentParser()
p.add_argument("--corpus", required=True, help="folder with train/dev/test.jsonl (gloss column)")
p.add_argument("--retrieval", required=True, help="retrieval checkpoint with a gloss head (rows 1-2)")
p.add_argument("--runs", required=True, help="folder for the recogniser runs (rows 3-5)")
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--set", dest="sets", action="append", default=[], help="extra recipe overrides for rows 3-5")
p.add_argument("--rows", default="3,4,5,5init", help="which CVT-SLR rows to train / read")
p.add_argument("--skip-retrieval", action="store_true", help="leave out rows 1-2")
p.add_argument("--out", default=None)
a = p.parse_args()

corpus = Path(a.corpus)
train, dev, test = corpus / "train.jsonl", corpus / "dev.jsonl", corpus / "test.jsonl"
runs = Path(a.runs)
results = []


def measure(name: str, model: Path, lm) -> None:
    """greedy, beam 5, beam 5 + LM at the dev-best weight, on dev and test."""
    for label, beam, weight in (("greedy", 1, 0.0), ("beam 5", 5, 0.0)):
        for split, manifest in (("dev", dev), ("test", test)):
            r = evaluate_wer(model, manifest, beam=beam, lm=lm, lm_weight=weight)
            results.append({"row": name, "decoding": label, "split": split, **r["metrics"], "seconds": r["seconds"]})
            print(json.dumps(results[-1]), flush=True)
    best_wb, best = None, None
    for w, b in LM_GRID:
        r = evaluate_wer(model, dev, beam=5, lm=lm, lm_weight=w, lm_bonus=b)
        print(json.dumps({"row": name, "lm_weight": w, "lm_bonus": b, "dev_wer": r["metrics"]["wer"]}), flush=True)
        if best is None or r["metrics"]["wer"] < best["metrics"]["wer"]:
            best_wb, best = (w, b), r
    label = f"beam 5 + LM x{best_wb[0]:g} bonus {best_wb[1]:g}"
    results.append({"row": name, "decoding": label, "split": "dev", **best["metrics"], "seconds": best["seconds"]})
    r = evaluate_wer(model, test, beam=5, lm=lm, lm_weight=best_wb[0], lm_bonus=best_wb[1])
    results.append({"row": name, "decoding": label, "split": "test", **r["metrics"], "seconds": r["seconds"]})
    print(json.dumps(results[-2:]), flush=True)


if not a.skip_retrieval:
    measure("1-2 retrieval CTC head", Path(a.retrieval), train)  # LM from the training manifest's glosses
wanted = set(a.rows.split(","))
for name, sets in ROWS.items():
    if name.split()[0] not in wanted:
        continue
    folder = runs / name.split()[0]
    if not (folder / "recognizer.safetensors").exists():
        cmd = ["nice", "-n", "5", str(Path(sys.executable).parent / "slsearch"), "train", "--recipe", "recognizer",
               "--manifest", str(train), "--dev", str(dev), "--out", str(folder), "--json",
               "--set", f"train.epochs={a.epochs}"]
        for s in sets + a.sets:
            cmd += ["--init", a.retrieval] if s == "--init" else ["--set", s]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"trained {name} in {time.perf_counter() - t0:.0f}s", flush=True)
    measure(name, folder, None)  # the run's own lm.json

print("\n| row | decoding | split | WER % | SUB | DEL % | INS % |\n|---|---|---|---|---|---|---|")
for r in results:
    print(f"| {r['row']} | {r['decoding']} | {r['split']} | {r['wer']:.2f} | {r['substitutions']} | "
          f"{r['del_rate']:.2f} | {r['ins_rate']:.2f} |")
if a.out:
    Path(a.out).write_text(json.dumps(results, indent=2))
