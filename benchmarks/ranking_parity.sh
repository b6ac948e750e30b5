#!/usr/bin/env bash
# Does the redesigned ranking pipeline rank exactly as the code before it? (issue 15)
#
#   benchmarks/ranking_parity.sh OLD_COMMIT DEMO_WORKDIR OUT
#
# DEMO_WORKDIR is a finished `slsearch demo --workdir` (corpus/, model/) trained by OLD_COMMIT's code.
# The old code (a git worktree of OLD_COMMIT) and the current code each build an index of the demo
# corpus with that checkpoint, evaluate every score from the index and from the manifest, answer T2V,
# V2T and V2V queries, and (re)fit the lexicon and likelihood stages on dev. A copy of the checkpoint
# with both likelihood weights forced to 1 checks the likelihood stage where dev picked weight 0.
# Prints one line per comparison: SAME or the differences.
set -euo pipefail
OLD=$1; DEMO=$(realpath "$2"); OUT=$3
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT" && OUT=$(realpath "$OUT") && cd "$OUT"
[ -d oldsrc ] || git -C "$REPO" worktree add --detach "$OUT/oldsrc" "$OLD" >/dev/null
old() { PYTHONPATH="$OUT/oldsrc" "$PY" -m slsearch "$@"; }
new() { PYTHONPATH="$REPO" "$PY" -m slsearch "$@"; }
rm -rf model_lik && cp -r "$DEMO/model" model_lik
"$PY" -c "
import json; p='model_lik/likelihood.json'; d=json.load(open(p))
for f in d['fusion'].values(): f['weight'] = 1.0
json.dump(d, open(p, 'w'))"
"$PY" -c "import json,sys; print('\n'.join(json.loads(l)['text'] for l in open(sys.argv[1]).readlines()[:40]))" \
    "$DEMO/corpus/test.jsonl" > queries.txt
PROBES=("$DEMO"/corpus/poses/test/*.npz)
PROBE=${PROBES[0]}
for who in old new; do
  mkdir -p $who && rm -rf $who/index
  $who index "$DEMO/corpus/manifest.jsonl" --model "$DEMO/model" --out $who/index --json > /dev/null
  J=$([ $who = old ] && echo "--json -" || echo "--json")
  for s in full fused cico lexical global; do
    $who eval --index $who/index --split test --score $s $J > $who/eval_index_$s.json
    $who eval --model "$DEMO/model" --manifest "$DEMO/corpus/test.jsonl" --score $s $J > $who/eval_model_$s.json
  done
  $who eval --model model_lik --manifest "$DEMO/corpus/test.jsonl" --score full $J > $who/eval_lik.json
  $who query --queries queries.txt --index $who/index --model model_lik -k 30 --json > $who/q_t2v.json
  $who query --video "$PROBE" --index $who/index --model model_lik -k 30 --json > $who/q_v2t.json
  $who query --video "$PROBE" --clips --index $who/index -k 30 --json > $who/q_v2v.json
  rm -rf $who/refit && cp -r "$DEMO/model" $who/refit
  $who lexicon --model $who/refit --manifest "$DEMO/corpus/train.jsonl" --dev "$DEMO/corpus/dev.jsonl" --json > $who/lexicon.json
  $who calibrate --model $who/refit --dev "$DEMO/corpus/dev.jsonl" --json > $who/calibrate.json
done
"$PY" - <<'PY'
import json
def load(p): return json.load(open(p))
for name in [f"eval_{w}_{s}" for w in ("index", "model") for s in ("full", "fused", "cico", "lexical", "global")] + ["eval_lik"]:
    a, b = load(f"old/{name}.json")["metrics"], load(f"new/{name}.json")["metrics"]
    diff = {k: (a[k], b.get(k)) for k in a if abs(a[k] - b.get(k, 1e9)) > 1e-9}
    print(f"{name:20} T2V R@1 {b['paper/t2v_R@1']:.2f} V2T R@1 {b['paper/v2t_R@1']:.2f}", "SAME" if not diff else f"DIFF {diff}")
for q in ("t2v", "v2t", "v2v"):
    a, b = load(f"old/q_{q}.json"), load(f"new/q_{q}.json")
    a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    same = sum([h["id"] + str(h["text"]) for h in x["results"]] == [h["id"] + str(h["text"]) for h in y["results"]]
               for x, y in zip(a, b))
    gap = max(abs(h["score"] - g["score"]) for x, y in zip(a, b) for h, g in zip(x["results"], y["results"]))
    print(f"query {q}: {same} of {len(a)} rankings identical, largest score difference {gap:.1e}")
for what in ("lexicon", "calibrate"):
    a, b = load(f"old/{what}.json")["fusion"], load(f"new/{what}.json")["fusion"]
    print(f"{what}: fitted weights", "SAME" if a == b else f"DIFF old {a} new {b}")
PY
