"""``avsprep inspect``: what a shard folder holds, and a contact sheet of one clip.

The sheet (matplotlib, Agg) has one column per frame and four rows: the frame
with its boxes (the cropped one thick), the crop, the GT mask, the log-mel example.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional


from avsprep.common.atomic import write_bytes
from avsprep.common.errors import DataError
from avsprep.shards import ShardSet


def summarize(ds: ShardSet) -> dict:
    """Splits, shards, clips, classes, sizes, audio source and build options from the manifest."""
    man = ds.manifest
    splits = {}
    for sp, v in man["splits"].items():
        splits[sp] = {"clips": v["clips"], "shards": len(v["shards"]),
                      "bytes": sum(e["bytes"] for e in v["shards"]),
                      "audio_source": sorted({s for e in v["shards"] for s in e.get("audio_source", "").split(",") if s})}
    opts = man["options"]
    return {
        "dir": str(ds.dir), "setting": man["setting"], "schema_version": man["schema_version"],
        "toolkit_version": man["toolkit_version"], "classes": man["classes"],
        "clips": sum(v["clips"] for v in splits.values()), "splits": splits,
        "bytes": sum(v["bytes"] for v in splits.values()),
        "frame_size": opts.get("frame_size"), "crop_size": opts.get("crop_size"),
        "crop_policy": opts.get("crop_policy"), "vggish": bool(opts.get("vggish_sha256")),
        "skipped": man.get("skipped", []), "options": opts,
    }


def _text(s: dict) -> str:
    lines = [f"{s['dir']}: {s['setting']} shards, schema {s['schema_version']}, "
             f"{s['clips']} clips, {s['bytes'] / 2**20:.1f} MiB"]
    for sp, v in s["splits"].items():
        lines.append(f"  {sp:<5} {v['clips']:>6} clips in {v['shards']} shard(s), {v['bytes'] / 2**20:.1f} MiB, "
                     f"audio from {', '.join(v['audio_source']) or '-'}")
    lines.append(f"  classes ({len(s['classes'])}): {', '.join(s['classes'])}")
    lines.append(f"  frames {s['frame_size']} px, crops {s['crop_size']} px ({s['crop_policy']}), "
                 f"VGGish embeddings: {'yes' if s['vggish'] else 'no (log-mel only)'}")
    if s["skipped"]:
        lines.append(f"  skipped {len(s['skipped'])} clip(s): " + ", ".join(x["clip"] for x in s["skipped"][:10]))
    return "\n".join(lines)


def contact_sheet(item: dict, classes: list[str]) -> bytes:
    """PNG bytes: frames with boxes, crops, masks, log-mel of one clip."""
    import matplotlib  # lazy: only for --png (matplotlib + Figure: 0.17 s to import, measured here)

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    t = item["frames"].shape[0]
    fig = Figure(figsize=(2.2 * t, 9.2), dpi=80)
    axes = fig.subplots(4, t, squeeze=False)
    label = classes[item["label"]] if 0 <= item["label"] < len(classes) else str(item["label"])
    fig.suptitle(f"{item['video']}  ({label})")
    for k in range(t):
        ax = axes[0][k]
        ax.imshow(item["frames"][k])
        for b in item["boxes"][item["boxes"][:, 1] == k + 1]:
            x0, y0, x1, y1 = b[3:]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5))
        ax.set_title(f"frame {k + 1}", fontsize=8)
        axes[1][k].imshow(item["crops"][k])
        axes[1][k].set_title("crop" if item["crop_valid"][k] else "no box", fontsize=8)
        axes[2][k].imshow(item["masks"][k], cmap="gray", vmin=0, vmax=1)
        axes[2][k].set_title("mask" if item["mask_valid"][k] else "no GT", fontsize=8)
        axes[3][k].imshow(item["audio_logmel"][k].T, origin="lower", aspect="auto", cmap="magma")
        axes[3][k].set_title(f"log-mel {k + 1}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def inspect_shards(directory: os.PathLike | str, clip: Optional[str] = None,
                   png: Optional[os.PathLike | str] = None) -> dict:
    """Summary of a shard folder; with ``png``, the contact sheet of ``clip`` (default: the first)."""
    ds = ShardSet(directory)
    summary = summarize(ds)
    text = _text(summary)
    if clip is not None or png is not None:
        if len(ds) == 0:
            raise DataError(f"{directory}: the shards hold no clips")
        try:
            i = ds.index(clip) if clip is not None else 0
        except KeyError:
            raise DataError(f"{directory}: no clip {clip!r} in the shards; "
                            "see manifest.json 'index' for the names") from None
        item = ds[i]
        where = ds.manifest["index"][item["video"]]
        summary["clip"] = {"video": item["video"], "label": int(item["label"]), "split": where[0],
                           "shard": where[1], "row": where[2], "boxes": int(len(item["boxes"])),
                           "mask_valid": item["mask_valid"].tolist(), "crop_valid": item["crop_valid"].tolist()}
        text += (f"\nclip {item['video']}: {where[0]}/{where[1]} row {where[2]}, "
                 f"{len(item['boxes'])} box(es), mask_valid {item['mask_valid'].astype(int).tolist()}, "
                 f"crop_valid {item['crop_valid'].astype(int).tolist()}")
        if png is not None:
            write_bytes(Path(png), contact_sheet(item, ds.classes))
            summary["png"] = str(png)
            text += f"\nwrote {png}"
    ds.close()
    summary["text"] = text
    return summary
