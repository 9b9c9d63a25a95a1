#!/usr/bin/env bash
# `make ablation`: the crop-loss ablation of issue 18 on the distractor demo (CPU): the demo data
# with a big, bright, central object in every frame (the sounding one in 75% of the train/val
# clips, a silent distractor in every test clip), its shards, then `avstrain ablate` over the
# baseline, the literal recipe, each coupled variant and the audio-blind control on $SEEDS.
# Rerunning skips finished runs.
# Everything lands under $ABLATION_OUT (default ./ablation-out); the table is $OUT/runs/ablation.md.
set -euo pipefail
PY="${PY:-python}"
OUT="${ABLATION_OUT:-ablation-out}"
CLIPS="${ABLATION_CLIPS:-192}"
SEEDS="${SEEDS:-0,1,2}"
EXTRA="${ABLATION_SET:-}"   # e.g. "--set epochs=6" for a quicker, smaller run
mkdir -p "$OUT"
step() { printf '\n==> %s\n' "$*" >&2; }

if [ ! -f "$OUT/data/s4_meta_data.csv" ]; then
  step "1/3 distractor demo dataset ($CLIPS clips) -> $OUT/data"
  "$PY" -m avsprep demo "$OUT/data" --clips "$CLIPS" --seed 0 --distractor --overwrite
fi
if [ ! -f "$OUT/shards/manifest.json" ]; then
  step "2/3 import + build shards -> $OUT/shards"
  "$PY" -m avsprep import --root "$OUT/data" -o "$OUT/boxes.csv" --overwrite
  "$PY" -m avsprep build "$OUT/boxes.csv" --root "$OUT/data" -o "$OUT/shards" --workers 2 \
      --crop-size "${DEMO_CROP_SIZE:-112}" --overwrite
fi
step "3/3 avstrain ablate (seeds $SEEDS) -> $OUT/runs"
# shellcheck disable=SC2086
"$PY" -m avstrain ablate "$OUT/shards" -o "$OUT/runs" --seeds "$SEEDS" $EXTRA \
    --config baseline=demo,crop_head=false,w_ce=0,w_pairwise=0,w_audio=0 \
    --config literal=demo \
    --config shared-encoder=demo,crop_encoder=segmentation \
    --config tpavi-audio=demo,audio_crop_source=tpavi \
    --config mask-crop=demo,w_mask_crop=1 \
    --config coupled=demo,crop_encoder=segmentation,audio_crop_source=tpavi,w_mask_crop=1 \
    --config audio-blind=demo,audio_blind=true,crop_head=false,w_ce=0,w_pairwise=0,w_audio=0 \
    --distractor-masks "$OUT/data/distractor_masks/test"
