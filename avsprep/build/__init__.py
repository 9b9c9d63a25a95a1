"""``avsprep build``: box table + AVSBench root -> HDF5 shards + manifest, reproducibly.

Clips are sorted by name and cut into shards of ``clips_per_shard``; with
``workers`` > 1 each worker process computes and writes whole shards (a shard's
bytes depend only on its clips), so the bytes never depend on ``workers``. Each
worker holds one shard in memory while writing it (HDF5 writes into a buffer;
see ``ShardWriter``), so peak memory grows with ``clips_per_shard`` x workers,
not with the dataset. Each shard is written to a temporary
name, closed, re-opened and checked, hashed, renamed, and its sha256 written
beside it (``shard-NNNNN.h5.sha256``), after the shard's input record
(``shard-NNNNN.h5.inputs.json``, ``provenance``); the manifest comes last. ``resume`` keeps
a finished shard whose hash, options and clip list match the plan and whose input files,
box rows and labels are those recorded; it rebuilds any other and says why.

Modules: ``clip`` (one clip's arrays, for every setting), ``workers`` (writing
the shards, and the ``on_bad_input`` error policy), ``crops`` (box -> crop).
What differs between S4/MS3 and AVSS is asked of the layout (``avsprep.datasets``).
"""

from __future__ import annotations

import collections
import errno
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from avsprep import __version__
from avsprep.annotations.table import read_table
from avsprep.audio import resampler_name
from avsprep.build import provenance
from avsprep.build.workers import ON_BAD_INPUT, shard_name, write_planned
from avsprep.common.atomic import file_sha256, write_text
from avsprep.common.clikit import check_output_dir, progress
from avsprep.common.errors import DataError
from avsprep.common.outputs import write_errno, write_message
from avsprep.datasets import open_layout
from avsprep.shards.integrity import VERIFIED, record_entry, write_record
from avsprep.shards.schema import FRAME_SIZE, MANIFEST, MASK_DECODING, SCHEMA_VERSION, SPLIT_ORDER
from avsprep.shards.verify import check_shard_file

# what a failed build keeps, stated in its error (common.outputs: no other partial output is kept)
BUILD_RESUME_RULE = "rerun with --resume (finished shards are kept)"

@dataclass
class BuildOptions:
    """What ``avsprep build`` was asked to do (``workers``/``overwrite``/``resume`` do not change bytes)."""

    splits: Optional[list[str]] = None
    clips_per_shard: int = 64
    workers: int = 1
    crop_size: int = 224
    crop_policy: str = "largest"
    vggish_weights: Optional[os.PathLike] = None
    on_bad_input: str = "stop"  # "stop" | "skip": see avsprep.build.workers (ON_BAD_INPUT)
    overwrite: bool = False
    resume: bool = False
    setting: Optional[str] = None
    subsets: Optional[str] = None  # AVSS: comma-separated v1s,v1m,v2 (None = all)


# ------------------------------------------------------------------------------- plan


def plan_shards(clips, clips_per_shard: int) -> list[tuple[str, int, list]]:
    """[(split, shard number, clips)] in build order: splits train/val/test, clips sorted by name."""
    plan = []
    for sp in SPLIT_ORDER:
        cs = sorted((c for c in clips if c.split == sp), key=lambda c: c.name)
        for i in range(0, len(cs), clips_per_shard):
            plan.append((sp, i // clips_per_shard, cs[i:i + clips_per_shard]))
    return plan


def _boxes_by_video(df, names: set, frames: range) -> dict:
    """Per clip, its box-table rows with a box on one of ``frames``: ``(frame, label, xml_width,
    xml_height, xmin, ymin, xmax, ymax)`` in table order."""
    out = collections.defaultdict(list)
    cols = ["video", "frame", "label", "xml_width", "xml_height", "xmin", "ymin", "xmax", "ymax"]
    sub = df[df["video"].isin(names)]
    for row in sub[cols].itertuples(index=False, name=None):
        video, frame = row[0], int(row[1])
        if frame in frames and not all(np.isnan(v) for v in row[5:9]):
            out[video].append((frame, "" if row[2] != row[2] else row[2], *[float(v) for v in row[3:9]]))
    return out


def _prepare_output(out: Path, plan, overwrite: bool) -> None:
    """Create ``out``; remove the manifest, the verification record, temporary files and shards
    outside the plan (``overwrite``: everything a build writes), so a build in progress never
    looks finished."""
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clear_previous(out)
    (out / MANIFEST).unlink(missing_ok=True)  # a build in progress never carries a manifest
    (out / VERIFIED).unlink(missing_ok=True)  # nor a verification record
    for p in out.glob(f".{MANIFEST}.tmp-*"):
        p.unlink()
    planned_files = {out / sp / shard_name(n) for sp, n, _ in plan}
    for sp in SPLIT_ORDER:
        d = out / sp
        if not d.is_dir():
            continue
        for p in d.iterdir():
            stale_tmp = p.name.startswith(".shard-") and ".tmp-" in p.name
            base = p.with_name(p.name[:-len(".sha256")]) if p.name.endswith(".sha256") else p
            base = base.with_name(base.name[:-len(provenance.SUFFIX)]) if p.name.endswith(provenance.SUFFIX) else base
            unplanned = (re.fullmatch(r"shard-\d{5}\.h5(\.sha256|\.inputs\.json)?", p.name)
                         and base not in planned_files)
            if stale_tmp or unplanned:
                p.unlink()


def _clear_previous(out: Path) -> None:
    """``--overwrite``: remove only what a build writes (manifest, split folders, temp files)."""
    for p in [out / MANIFEST, *out.glob(f".{MANIFEST}.tmp-*"), out / VERIFIED, *out.glob(f".{VERIFIED}.tmp-*")]:
        p.unlink(missing_ok=True)
    for sp in SPLIT_ORDER:
        if (out / sp).is_dir():
            shutil.rmtree(out / sp)


def _keepable(final: Path, split: str, record_json: str, planned: list[str]) -> tuple[Optional[dict], str]:
    """A finished shard from an earlier run that matches the plan: (its attrs, ""), else (None, why not)."""
    side = final.with_name(final.name + ".sha256")
    if not (final.is_file() and side.is_file()):
        return None, "not finished"
    try:
        if side.read_text().strip() != file_sha256(final):
            return None, "its sha256 differs from its .sha256 file"
    except OSError:
        return None, "unreadable"
    problems = check_shard_file(final, split=split)
    if problems:
        return None, f"failed its check ({problems[0].message})"
    with h5py.File(final, "r") as f:
        attrs = {k: f.attrs[k] for k in ("build_options", "clips", "skipped", "audio_source")}
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in f["video"][()]]
    if str(attrs["build_options"]) != record_json:
        why = provenance.options_change(json.loads(str(attrs["build_options"])), json.loads(record_json))
        return None, why or "options changed"
    if json.loads(str(attrs["clips"])) != planned:
        return None, "its clip list differs from the plan"
    return {"names": names, "skipped": json.loads(str(attrs["skipped"])),
            "audio_source": str(attrs["audio_source"])}, ""


# ------------------------------------------------------------------------------- build


def build_shards(table, root, out, opts: BuildOptions, quiet: bool = False) -> dict:
    """Write ``out/{split}/shard-NNNNN.h5`` and ``out/manifest.json``; returns a summary with ``text``."""
    t0 = time.perf_counter()
    out = Path(out)
    if opts.crop_policy not in ("largest", "union", "first"):
        raise ValueError(f"unknown crop policy {opts.crop_policy!r}")
    if opts.on_bad_input not in ON_BAD_INPUT:
        raise ValueError(f"on_bad_input must be stop or skip, got {opts.on_bad_input!r}")
    check_output_dir(out, overwrite=opts.overwrite, resume=opts.resume, what="SHARDS")
    layout = open_layout(root, opts.setting, opts.subsets)
    classes = layout.classes()
    clips = layout.clips(opts.splits)
    if not clips:
        raise DataError(f"{layout.meta_path}: no clips in split(s) {', '.join(opts.splits or SPLIT_ORDER)}")
    df = read_table(table)
    vggish_sha = file_sha256(opts.vggish_weights) if opts.vggish_weights else ""
    record = {
        "schema_version": SCHEMA_VERSION, "toolkit_version": __version__, "setting": layout.setting,
        "splits": [sp for sp in SPLIT_ORDER if any(c.split == sp for c in clips)],
        "clips_per_shard": opts.clips_per_shard, "frame_size": FRAME_SIZE, "crop_size": opts.crop_size,
        "crop_policy": opts.crop_policy, "on_bad_input": opts.on_bad_input,
        "vggish_sha256": vggish_sha, "resampler": resampler_name(),
        "table_sha256": file_sha256(table), "root": str(Path(root).resolve()),
    }
    record.update(layout.record_extras())
    record_json = json.dumps(record, sort_keys=True)
    plan = plan_shards(clips, opts.clips_per_shard)
    boxes = _boxes_by_video(df, {c.name for c in clips}, layout.table_frames)

    _prepare_output(out, plan, opts.overwrite)
    results: dict[int, dict] = {}
    todo, rebuilt = [], []
    for i, (sp, n, cs) in enumerate(plan):
        final = out / sp / shard_name(n)
        kept, why = _keepable(final, sp, record_json, [c.name for c in cs]) if opts.resume else (None, "")
        if kept is not None:  # finished and as planned: are its inputs still those it was built from?
            why = provenance.stale_reason(final, json.loads(record_json), layout, cs, boxes) or ""
            kept = None if why else kept
        if kept is not None:
            results[i] = dict(kept, kept=True)
        else:
            if why and why != "not finished":
                rebuilt.append({"shard": f"{sp}/{shard_name(n)}", "reason": why})
            for p in (final, final.with_name(final.name + ".sha256"), provenance.record_path(final)):
                p.unlink(missing_ok=True)
            todo.append(i)
    n_todo = sum(len(plan[i][2]) for i in todo)
    tasks = [(i, (c, boxes.get(c.name, []), layout.clip_label(c))) for i in todo for c in plan[i][2]]
    init = (layout, opts.crop_size, opts.crop_policy, str(opts.vggish_weights) if opts.vggish_weights else None)

    bar = progress(total=n_todo, quiet=quiet, desc="build", unit="clip")
    try:
        write_planned(out, plan, results, todo, tasks, init, record_json, opts,
                       bool(vggish_sha), bar)
    except (OSError, RuntimeError) as exc:
        raise _write_error(out, exc) from exc

    built = {n for r in results.values() for n in r["names"]}
    csv_order = {sp: [c.name for c in layout.csv_clips([sp]) if c.name in built] for sp in record["splits"]}
    manifest = _manifest(out, plan, results, classes, layout.setting, record, csv_order)
    try:
        write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    except OSError as exc:
        raise _write_error(out, exc) from exc
    # every listed shard was hashed by this build (written, or kept by --resume): record it
    write_record(out, {e["file"]: record_entry(out / e["file"], e["sha256"])
                       for v in manifest["splits"].values() for e in v["shards"]})
    secs = time.perf_counter() - t0
    return _summary(out, manifest, results, n_todo, secs, rebuilt)


def _write_error(out: Path, exc: BaseException) -> DataError:
    """One line for an I/O failure while writing (disk full, quota, permissions)."""
    if write_errno(exc) is None:  # an HDF5 failure of another kind: still one line, same rule
        exc = OSError(errno.ENOSPC if "space" in str(exc).lower() else None, str(exc))
    return DataError(write_message(exc, out, "SHARDS folder", BUILD_RESUME_RULE, noun="shards"))


def _manifest(out: Path, plan, results, classes, setting, record, csv_order: dict) -> dict:
    """``csv_order``: per split, the clip names in metadata CSV row order (the official test loop's
    order; shards themselves are sorted by name)."""
    splits: dict = {}
    index: dict = {}
    skipped = []
    for i, (sp, n, cs) in enumerate(plan):
        r = results[i]
        final = out / sp / shard_name(n)
        entry = {"file": f"{sp}/{shard_name(n)}", "count": len(r["names"]), "bytes": final.stat().st_size,
                 "sha256": r.get("sha256") or file_sha256(final), "audio_source": r["audio_source"],
                 "clips": r["names"]}
        s = splits.setdefault(sp, {"clips": 0, "shards": []})
        s["shards"].append(entry)
        s["clips"] += entry["count"]
        for row, name in enumerate(r["names"]):
            index[name] = [sp, shard_name(n), row]
        skipped += [dict(s_, split=sp) for s_ in r["skipped"]]
    return {"schema_version": SCHEMA_VERSION, "toolkit_version": __version__, "setting": setting,
            "classes": classes, "options": record, "splits": splits, "index": index, "skipped": skipped,
            "mask_decoding": MASK_DECODING[setting], "csv_order": csv_order}


def _summary(out: Path, manifest: dict, results: dict, n_built: int, secs: float, rebuilt: list) -> dict:
    """``rebuilt``: the finished shards ``--resume`` rebuilt, each with its reason (one line each)."""
    kept = sum(1 for r in results.values() if r.get("kept"))
    per = {sp: {"clips": v["clips"], "shards": len(v["shards"])} for sp, v in manifest["splits"].items()}
    total = sum(v["clips"] for v in per.values())
    size = sum(e["bytes"] for v in manifest["splits"].values() for e in v["shards"])
    parts = ", ".join(f"{sp} {v['clips']} clips in {v['shards']} shard(s)" for sp, v in per.items())
    text = (f"Wrote {out}: {parts}; {size / 2**20:.1f} MiB; {len(manifest['skipped'])} clip(s) skipped"
            + (f"; kept {kept} finished shard(s)" if kept else "")
            + (f"; rebuilt {len(rebuilt)} finished shard(s)" if rebuilt else "")
            + f"; {n_built} clips built in {secs:.1f} s ({n_built / max(secs, 1e-9):.1f} clips/s).")
    for s in manifest["skipped"]:
        text += f"\n  skipped {s['clip']} ({s['split']}): {s['reason']}"
    for r in rebuilt:
        text += f"\n  rebuilt {r['shard']}: {r['reason']}"
    return {"text": text, "output": str(out), "splits": per, "clips": total, "bytes": size,
            "skipped": manifest["skipped"], "kept_shards": kept, "rebuilt_shards": rebuilt, "built_clips": n_built,
            "seconds": round(secs, 3), "clips_per_s": round(n_built / max(secs, 1e-9), 2)}
