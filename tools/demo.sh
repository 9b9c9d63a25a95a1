#!/usr/bin/env bash
# The main job on the embedded demo dataset: generate, import, validate, build,
# train, evaluate (with audio ablations), print a short table, write the HTML report,
# segment two demo test clips rendered as videos (with and without the sound);
# the last line printed is the path of the segment page's index.html.
# Everything lands under $DEMO_OUT (default ./demo-out). Called by `make demo`.
set -euo pipefail
PY="${PY:-python}"
OUT="${DEMO_OUT:-demo-out}"
SEED="${DEMO_SEED:-0}"
CLIPS="${DEMO_CLIPS:-192}"
mkdir -p "$OUT"
step() { printf '\n==> %s\n' "$*" >&2; }

step "1/9 demo dataset ($CLIPS clips, seed $SEED) -> $OUT/data"
"$PY" -m avsprep demo "$OUT/data" --clips "$CLIPS" --seed "$SEED" --overwrite --raw-videos
step "1/9 extract the raw videos again (official frames + moviepy wav) -> $OUT/extracted"
"$PY" -m avsprep extract "$OUT/data/s4_data/raw_videos" -o "$OUT/extracted" --workers 2 --overwrite --quiet
step "2/9 import labelImg XMLs -> $OUT/boxes.csv"
"$PY" -m avsprep import --root "$OUT/data" -o "$OUT/boxes.csv" --overwrite
step "3/9 validate box coverage"
"$PY" -m avsprep validate "$OUT/boxes.csv" --root "$OUT/data" --max-findings 5 > "$OUT/validation.txt" \
    || { cat "$OUT/validation.txt"; exit 1; }
head -n 20 "$OUT/validation.txt"
step "4/9 build HDF5 shards -> $OUT/shards"
"$PY" -m avsprep build "$OUT/boxes.csv" --root "$OUT/data" -o "$OUT/shards" --workers 2 \
    --crop-size "${DEMO_CROP_SIZE:-112}" --overwrite
"$PY" -m avsprep verify "$OUT/shards"
step "5/9 train (preset demo) -> $OUT/run"
"$PY" -m avstrain train "$OUT/shards" -o "$OUT/run" --preset demo --seed "$SEED" --overwrite
step "6/9 evaluate on test with audio ablations -> $OUT/results.json"
"$PY" -m avstrain evaluate "$OUT/run/best.pt" "$OUT/shards" --split test \
    --audio-ablation none,shuffle,zero --json > "$OUT/results.json"
step "7/9 contact sheet of one clip -> $OUT/contact_sheet.png"
"$PY" -m avsprep inspect "$OUT/shards" --png "$OUT/contact_sheet.png" --overwrite > /dev/null
"$PY" tools/demo_table.py "$OUT"
step "8/9 HTML report (metrics, per-clip listening gap, galleries) -> $OUT/report"
"$PY" -m avstrain report "$OUT/run/best.pt" "$OUT/shards" -o "$OUT/report" --overwrite --quiet
step "9/9 segment two test clips (raw videos) with and without the sound -> $OUT/segment"
mapfile -t SEG_CLIPS < <(find "$OUT/data/s4_data/raw_videos/test" -name '*.mp4' | sort | head -n 2)
"$PY" -m avstrain segment "$OUT/run/best.pt" "${SEG_CLIPS[@]}" -o "$OUT/segment" --audio-ablation zero \
    --fps "${DEMO_SEGMENT_FPS:-5}" --overwrite --quiet
