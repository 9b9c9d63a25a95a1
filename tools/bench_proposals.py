"""Box proposals on the demo: how many are within IoU 0.5 / 0.9 of the generator's true boxes.

Ours: ``avstrain predict CKPT SHARDS --split train --labelimg DIR`` on the demo model,
for the frames without a GT mask (frames 2-5 of every train clip), each proposal read
back through the importer's reader (labelImg 1-based). Truth: the tight box of the
sounding object's mask as the generator renders it (``avsprep.demo.avsbench``), for the same
frames. Baseline: what an annotator gets without a model, frame 1's GT-mask box
(``avsprep propose --from masks``) copied to frames 2-5 of the clip.
Also reported: ``propose --from masks`` on the frames with a GT mask against the
demo's labelImg boxes (the acceptance check, share within IoU 0.9).
Prints one JSON line last.

    python tools/bench_proposals.py --checkpoint RUN/best.pt --shards SHARDS --clips 192 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--shards", required=True, type=Path)
    ap.add_argument("--clips", type=int, default=192, help="demo size the shards were built from")
    ap.add_argument("--seed", type=int, default=0, help="demo seed the shards were built from")
    ap.add_argument("--split", default="train")
    args = ap.parse_args()

    from avsprep.annotations.convention import LABELIMG_1BASED
    from avsprep.build.crops import box_iou as iou
    from avsprep.annotations.propose import mask_boxes, proposal_bytes
    from avsprep.demo.avsbench import plan_demo, render_frames
    from avsprep.demo.render import labelimg_box
    from avsprep.annotations.voc import read_voc, read_voc_file
    from avstrain.prediction import run_predict

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "proposals"
        summary = run_predict(args.checkpoint, args.shards, None, split=args.split, device="cpu", quiet=True,
                              labelimg=out)
        ours, base, from_masks = [], [], []
        empty = 0
        for spec in plan_demo(args.clips, args.seed):
            _, masks = render_frames(spec)
            truth = [mask_boxes(masks[k, 0])[0] for k in range(5)]
            # propose --from masks on GT-mask frames, vs the demo's own labelImg box, through the same reader
            gt_frames = [0] if spec.split == "train" else range(5)
            for k in gt_frames:
                xml = proposal_bytes(mask_boxes(masks[k, 0]), spec.category, 224, 224, 3, spec.name, "x.png",
                                     None, "masks")
                prop = read_voc(xml, "x.xml", convention=LABELIMG_1BASED).boxes[0]
                x0, y0, x1, y1 = labelimg_box(masks[k, 0])
                demo = (x0 - 1, y0 - 1, x1, y1)  # the demo XML, read 1-based like every labelImg file
                from_masks.append(iou((prop.xmin, prop.ymin, prop.xmax, prop.ymax), demo))
            if spec.split != args.split:
                continue
            for k in range(1, 5):  # frames 2-5: no GT mask in S4 train
                p = out / spec.split / spec.category / spec.name / f"{spec.name}_{k + 1}.xml"
                res = read_voc_file(p, name=p.name)
                if not res.boxes:
                    empty += 1
                    ours.append(0.0)
                else:
                    boxes = res.boxes_as(LABELIMG_1BASED)
                    b = boxes[0]
                    ours.append(iou((b.xmin, b.ymin, b.xmax, b.ymax), truth[k]))
                base.append(iou(truth[0], truth[k]))
    o, b, m = np.asarray(ours), np.asarray(base), np.asarray(from_masks)
    share = lambda v, t: float(np.mean(v >= t)) if v.size else float("nan")  # noqa: E731
    doc = {
        "metric": "proposals_within_iou_0.5", "unit": "share of frames without a GT mask",
        "ours": round(share(o, 0.5), 4), "baseline": round(share(b, 0.5), 4),
        "ratio": round(share(o, 0.5) / share(b, 0.5), 3) if share(b, 0.5) > 0 else None,
        "ours_iou_0.9": round(share(o, 0.9), 4), "baseline_iou_0.9": round(share(b, 0.9), 4),
        "ours_mean_iou": round(float(o.mean()), 4), "baseline_mean_iou": round(float(b.mean()), 4),
        "frames": int(o.size), "empty_predictions": empty, "proposals_written": summary.get("proposals"),
        "baseline_is": "frame 1's GT-mask box copied to frames 2-5",
        "from_masks_within_iou_0.9": round(share(m, 0.9), 4), "from_masks_frames": int(m.size),
        "checkpoint": str(args.checkpoint), "clips": args.clips, "seed": args.seed,
        "load_1min": round(os.getloadavg()[0], 2),
    }
    print(f"{doc['frames']} frames without a GT mask: {doc['ours']:.1%} of the model's proposals within IoU 0.5 "
          f"and {doc['ours_iou_0.9']:.1%} within 0.9 of the true boxes (copying frame 1's box: "
          f"{doc['baseline']:.1%} / {doc['baseline_iou_0.9']:.1%}).")
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
