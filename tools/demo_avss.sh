#!/usr/bin/env bash
# The AVSS path on the synthetic AVSBench-semantic release: generate (v1s, v1m, v2 subsets),
# import frames/{i}.xml, validate, build 10-step shards, train the 71-class semantic task
# (preset avss-demo), evaluate with the official AVSS metric and print the semantic table.
# Everything lands under $DEMO_OUT (default ./demo-avss-out). Called by `make demo-avss`.
set -euo pipefail
PY="${PY:-python}"
OUT="${DEMO_OUT:-demo-avss-out}"
SEED="${DEMO_SEED:-123}"  # the preset's seed; seed 0 leaves the tiny 71-class head stuck near ln 71
CLIPS="${DEMO_CLIPS:-6}"
mkdir -p "$OUT"
step() { printf '\n==> %s\n' "$*" >&2; }

step "1/6 AVSS demo release ($CLIPS clips per subset, seed $SEED) -> $OUT/release"
"$PY" -m avsprep demo "$OUT/release" --setting avss --clips "$CLIPS" --seed "$SEED" --overwrite
step "2/6 import labelImg XMLs (frames/{i}.xml) -> $OUT/boxes.csv"
"$PY" -m avsprep import --root "$OUT/release" -o "$OUT/boxes.csv" --overwrite
step "3/6 validate the release and the boxes"
"$PY" -m avsprep validate "$OUT/boxes.csv" --root "$OUT/release" --max-findings 3 > "$OUT/validation.txt" \
    || { cat "$OUT/validation.txt"; exit 1; }
head -n 20 "$OUT/validation.txt"
step "4/6 build AVSS shards -> $OUT/shards"
"$PY" -m avsprep build "$OUT/boxes.csv" --root "$OUT/release" -o "$OUT/shards" --crop-size 64 --overwrite
"$PY" -m avsprep verify "$OUT/shards"
step "5/6 train (preset avss-demo) -> $OUT/run"
"$PY" -m avstrain train "$OUT/shards" -o "$OUT/run" --preset avss-demo --seed "$SEED" --overwrite
step "6/6 evaluate on test (official AVSS metric, per class, audio shuffle)"
"$PY" -m avstrain evaluate "$OUT/run/best.pt" "$OUT/shards" --split test --per-class \
    --audio-ablation none,shuffle --json > "$OUT/results.json"
"$PY" -m avstrain evaluate "$OUT/run/best.pt" "$OUT/shards" --split test --per-class --quiet
