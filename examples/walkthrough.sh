#!/usr/bin/env bash
# A walk through slsearch with the ordinary commands, on a small synthetic corpus.
# Runs as a test (tests/test_examples.py) with a tiny setting; by hand:
#   bash examples/walkthrough.sh            # ~5 minutes on 2 cores
# Settings (environment): WORK (folder), LIMIT (clips per split), RECIPE (name or path), EPOCHS, SLSEARCH (the command).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SLSEARCH="${SLSEARCH:-slsearch}"
WORK="${WORK:-walkthrough}"
LIMIT="${LIMIT:-400}"
RECIPE="${RECIPE:-demo}"  # a packaged recipe by name, or a TOML path
EPOCHS="${EPOCHS:-8}"
# train and index record the model and index they make in a workspace file, the defaults of the commands
# after them (README, "The workspace"); here it lives in $WORK (by default: ./slsearch.toml).
export SLSEARCH_WORKSPACE="${SLSEARCH_WORKSPACE:-$WORK/slsearch.toml}"

echo "== 1. a corpus: synthetic signer, German weather sentences ($LIMIT clips per split)"
$SLSEARCH synth --corpus demo --out "$WORK/corpus" --limit "$LIMIT"

echo "== 2. train the towers, keep the best checkpoint on dev (the workspace's model from now on)"
$SLSEARCH train --recipe "$RECIPE" --set "train.epochs=$EPOCHS" \
  --manifest "$WORK/corpus/train.jsonl" --dev "$WORK/corpus/dev.jsonl" --out "$WORK/model"

echo "== 3. index the test clips (texts come from the manifest) into indexes/test beside the workspace file"
$SLSEARCH index "$WORK/corpus/test.jsonl"
$SLSEARCH status

echo "== 4. search: one sentence, then a file of queries as JSON"
$SLSEARCH query "wetter morgen" -k 5
$SLSEARCH query --queries "$here/queries.txt" -k 3 --json > "$WORK/queries.json"

echo "== 5. search with a clip: which sentences does it say?"
clip="$(ls "$WORK"/corpus/poses/test/*.npz | head -n 1)"
$SLSEARCH query --video "$clip" -k 3

echo "== 6. how good is it? R@1/5/10 on the indexed test clips"
$SLSEARCH eval --recall 1,5,10 --json-out "$WORK/eval.json"

echo "== 7. translate a clip"
$SLSEARCH translate "$clip" --beam 4

echo "== 8. add clips later without a rebuild, remove one (every flag still works: --index, --model, --out)"
$SLSEARCH index "$WORK/corpus/dev.jsonl" --add
$SLSEARCH remove "$(basename "$clip" .npz)"
echo "walkthrough done: everything is in $WORK"
