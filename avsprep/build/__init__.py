"""``avsprep build``: box table + AVSBench root -> HDF5 shards + manifest, reproducibly.

Clips are sorted by name and cut into shards of ``clips_per_shard``; with
``workers`` > 1 each worker process computes and writes whole shards (a shard's
bytes depend only on its clips), so the bytes never depend on ``workers``. Each
worker holds one shard in memory while writing it (HDF5 writes into a buffer;
see ``ShardWriter``), so peak memory grows with ``clips_per_shard`` x workers,
not with the dataset. Each shard is written to a temporary
name, closed, re-opened and checked, hashed, renamed, and its sha256 written
beside it (``shard-NNNNN.h5.sha256``); the manifest comes last. ``resume`` keeps
a finished shard whose hash, options and clip list match the plan.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import numpy as np

from avsprep import __version__
from avsprep.common.atomic import commit, tmp_path_for, write_text
from avsprep.common.clikit import check_output_dir, progress
from avsprep.build.crops import crop_and_resize, frame_boxes, select_box
from avsprep.common.errors import DataError, IntegrityError
from avsprep.common.images import open_image
from avsprep.shards.integrity import VERIFIED, record_entry, write_record
from avsprep.shards import (
    FRAME_SIZE, FRAMES, MANIFEST, MASK_DECODING, SCHEMA_VERSION, SPLIT_ORDER, BuildOptions, ShardWriter,
    check_shard_file, file_sha256,
)
from avsprep.datasets import open_layout
from avsprep.datasets.classes import normalise_label

log = logging.getLogger("avsprep.build")

# ------------------------------------------------------------------------------- per clip (pure-ish)


def decode_mask(im) -> np.ndarray:
    """A GT mask already converted to its setting's PIL mode -> stored uint8 (mode '1': 0/1;
    mode 'P': the palette index, which the official ``ToTensor`` divides by 255)."""
    return np.asarray(im, dtype=np.uint8) if im.mode != "1" else np.asarray(im).astype(np.uint8)


def clip_arrays(layout, clip, boxes: list[tuple], classes: list[str], crop_size: int,
                crop_policy: str, label: int) -> dict:
    """All arrays of one clip (frames, masks, crops, boxes, log-mel); ``DataError`` on bad input.

    ``boxes``: table rows ``(frame, label, xml_width, xml_height, xmin, ymin, xmax, ymax)``
    in table order. Boxes are rescaled from the XML ``<size>`` to the real
    frame, clamped, cropped from the real frame, and stored in the coordinates
    of the stored (224 x 224) frame.
    """
    from PIL import Image

    from avsprep.audio import clip_audio

    t, s, c = FRAMES, FRAME_SIZE, crop_size
    cls_index = {normalise_label(n): i for i, n in enumerate(classes)}
    frames = np.zeros((t, s, s, 3), np.uint8)
    masks = np.zeros((t, s, s), np.uint8)
    mask_valid = np.zeros(t, bool)
    crops = np.zeros((t, c, c, 3), np.uint8)
    crop_valid = np.zeros(t, bool)
    box_rows = []
    by_frame = collections.defaultdict(list)
    for b in boxes:
        by_frame[int(b[0])].append(b)
    for k in range(1, t + 1):
        im = open_image(Path(layout.frame_path(clip, k)), clip.name, f"frame {k}", "RGB")
        w, h = im.size
        full = np.asarray(im)
        frames[k - 1] = full if (w, h) == (s, s) else np.asarray(im.resize((s, s), Image.BILINEAR))
        rows = by_frame.get(k, [])
        if rows:
            real, finite = frame_boxes(rows, w, h)
            choice = select_box(real[finite], crop_policy)
            if choice is not None:
                crops[k - 1] = crop_and_resize(full, choice, c)
                crop_valid[k - 1] = True
            scaled = real * np.array([s / w, s / h, s / w, s / h])
            for r, bx, ok in zip(rows, scaled, finite):
                if ok:
                    box_rows.append([0, k, cls_index.get(normalise_label(str(r[1])), -1), *bx])
    mode = MASK_DECODING[layout.setting]["pil_mode"]
    for k in layout.mask_frames(clip):
        m = open_image(Path(layout.mask_path(clip, k)), clip.name, f"mask {k}", mode)
        if m.size != (s, s):
            m = m.resize((s, s), Image.NEAREST)
        masks[k - 1] = decode_mask(m)
        mask_valid[k - 1] = True
    try:
        logmel, source = clip_audio(layout, clip)
    except DataError as exc:
        raise DataError(f"clip {clip.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - soundfile/scipy raise many types on corrupt wavs
        raise DataError(f"clip {clip.name}: audio unreadable ({type(exc).__name__}: {exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
    return {
        "video": clip.name, "label": np.int16(label), "frames": frames, "masks": masks,
        "mask_valid": mask_valid, "crops": crops, "crop_valid": crop_valid,
        "audio_logmel": np.asarray(logmel, np.float32), "boxes": np.array(box_rows, np.float32).reshape(-1, 7),
        "audio_source": source,
    }


# ------------------------------------------------------------------------------- workers

_W: dict = {}


@contextlib.contextmanager
def _one_torch_thread():
    """VGGish on one thread, so embeddings are bit-identical in every worker layout."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


def _init_worker(root: str, setting: str, classes, crop_size, crop_policy, vggish_weights) -> None:
    from avsprep.datasets.avss import AVSSLayout
    from avsprep.datasets.avsbench import AVSBenchLayout

    _W.clear()
    _W.update(layout=AVSSLayout(root) if setting == "avss" else AVSBenchLayout(root, setting), classes=classes, crop_size=crop_size,
              crop_policy=crop_policy, vggish=None)
    if vggish_weights:
        from avsprep.audio import load_vggish

        _W["vggish"] = load_vggish(vggish_weights)


def _work(task) -> tuple[str, object]:
    """(``"ok"``, arrays) or (``"error"``, message) for one clip; never raises DataError."""
    clip, boxes, label = task
    try:
        if _W["layout"].setting == "avss":  # AVSS release: avsprep.build.avss_clip
            from avsprep.build.avss_clip import avss_clip_arrays

            out = avss_clip_arrays(_W["layout"], clip, boxes, _W["crop_size"], _W["crop_policy"], label)
        else:
            out = clip_arrays(_W["layout"], clip, boxes, _W["classes"], _W["crop_size"],
                              _W["crop_policy"], label)
    except DataError as exc:
        return "error", str(exc)
    if _W["vggish"] is not None:
        with _one_torch_thread() as torch, torch.no_grad():
            x = torch.from_numpy(out["audio_logmel"][:, None].copy())
            out["audio_vggish"] = _W["vggish"](x).numpy().astype(np.float32)
        if "frame_valid" in out:  # AVSS: the official code zeroes the embedding of padded steps
            out["audio_vggish"][~out["frame_valid"]] = 0.0
    return "ok", out


# ------------------------------------------------------------------------------- plan


def plan_shards(clips, clips_per_shard: int) -> list[tuple[str, int, list]]:
    """[(split, shard number, clips)] in build order: splits train/val/test, clips sorted by name."""
    plan = []
    for sp in SPLIT_ORDER:
        cs = sorted((c for c in clips if c.split == sp), key=lambda c: c.name)
        for i in range(0, len(cs), clips_per_shard):
            plan.append((sp, i // clips_per_shard, cs[i:i + clips_per_shard]))
    return plan


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


def _boxes_by_video(df, names: set, frames=range(1, FRAMES + 1)) -> dict:
    out = collections.defaultdict(list)
    cols = ["video", "frame", "label", "xml_width", "xml_height", "xmin", "ymin", "xmax", "ymax"]
    sub = df[df["video"].isin(names)]
    for row in sub[cols].itertuples(index=False, name=None):
        video, frame = row[0], int(row[1])
        if frame in frames and not all(np.isnan(v) for v in row[5:9]):
            out[video].append((frame, "" if row[2] != row[2] else row[2], *[float(v) for v in row[3:9]]))
    return out


def _clear_previous(out: Path) -> None:
    """``--overwrite``: remove only what a build writes (manifest, split folders, temp files)."""
    for p in [out / MANIFEST, *out.glob(f".{MANIFEST}.tmp-*"), out / VERIFIED, *out.glob(f".{VERIFIED}.tmp-*")]:
        p.unlink(missing_ok=True)
    for sp in SPLIT_ORDER:
        if (out / sp).is_dir():
            shutil.rmtree(out / sp)


def _keepable(final: Path, split: str, record_json: str, planned: list[str]) -> Optional[dict]:
    """A finished shard from an earlier run that matches the plan: its attrs, else None."""
    side = final.with_name(final.name + ".sha256")
    if not (final.is_file() and side.is_file()):
        return None
    try:
        if side.read_text().strip() != file_sha256(final):
            return None
    except OSError:
        return None
    if check_shard_file(final, split=split):
        return None
    import h5py

    with h5py.File(final, "r") as f:
        attrs = {k: f.attrs[k] for k in ("build_options", "clips", "skipped", "audio_source")}
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in f["video"][()]]
    if str(attrs["build_options"]) != record_json or json.loads(str(attrs["clips"])) != planned:
        return None
    return {"names": names, "skipped": json.loads(str(attrs["skipped"])), "audio_source": str(attrs["audio_source"])}


# ------------------------------------------------------------------------------- build


def build_shards(table, root, out, opts: BuildOptions, quiet: bool = False) -> dict:
    """Write ``out/{split}/shard-NNNNN.h5`` and ``out/manifest.json``; returns a summary with ``text``."""
    from avsprep.audio import resampler_name
    from avsprep.annotations.table import read_table

    t0 = time.perf_counter()
    out = Path(out)
    if opts.crop_policy not in ("largest", "union", "first"):
        raise ValueError(f"unknown crop policy {opts.crop_policy!r}")
    if opts.on_bad_input not in ("stop", "skip"):
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
    if layout.setting == "avss":
        from avsprep.build.avss_clip import MASK_DECODING as AVSS_DECODING, PADDING

        record.update(subsets=list(layout.subsets), avss_mask_decoding=AVSS_DECODING, padding=PADDING,
                      geometry="train: short edge 224 + centre crop; val/test: resize 224x224")
    record_json = json.dumps(record, sort_keys=True)
    plan = plan_shards(clips, opts.clips_per_shard)
    boxes = _boxes_by_video(df, {c.name for c in clips},
                            range(10) if layout.setting == "avss" else range(1, FRAMES + 1))

    # -- prepare the output folder
    out.mkdir(parents=True, exist_ok=True)
    if opts.overwrite:
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
            unplanned = re.fullmatch(r"shard-\d{5}\.h5(\.sha256)?", p.name) and base not in planned_files
            if stale_tmp or unplanned:
                p.unlink()

    results: dict[int, dict] = {}
    todo = []
    for i, (sp, n, cs) in enumerate(plan):
        final = out / sp / shard_name(n)
        kept = _keepable(final, sp, record_json, [c.name for c in cs]) if opts.resume else None
        if kept is not None:
            results[i] = dict(kept, kept=True)
        else:
            for p in (final, final.with_name(final.name + ".sha256")):
                p.unlink(missing_ok=True)
            todo.append(i)
    n_todo = sum(len(plan[i][2]) for i in todo)
    label_of = {c: (classes.index(c.category) if layout.setting == "s4" and c.category in classes else 0)
                for c in clips}
    if layout.setting == "avss":  # the clip's first sounding class (0 when a_obj names none)
        from avsprep.datasets.avss_classes import clip_classes

        label_of = {c: (clip_classes(c.a_obj) or [0])[0] for c in clips}
    tasks = [(i, (c, boxes.get(c.name, []), label_of[c])) for i in todo for c in plan[i][2]]
    init = (str(layout.root), layout.setting, classes, opts.crop_size, opts.crop_policy,
            str(opts.vggish_weights) if opts.vggish_weights else None)

    bar = progress(total=n_todo, quiet=quiet, desc="build", unit="clip")
    try:
        _write_planned(out, plan, results, todo, tasks, init, record_json, opts,
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
    return _summary(out, manifest, results, n_todo, secs)


def _write_error(out: Path, exc: BaseException) -> DataError:
    """One line for an I/O failure while writing (disk full, quota, permissions)."""
    text = getattr(exc, "strerror", None) or str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in str(exc) or "No space" in str(exc):
        text = "No space left on device"
    where = getattr(exc, "filename", None) or out
    return DataError(f"{where}: cannot write shards: {text}; free space or choose another SHARDS "
                     f"folder, then rerun with --resume (finished shards are kept)")


def _write_planned(out, plan, results, todo, tasks, init, record_json, opts, vggish, bar) -> None:
    """Write every shard in ``todo``.

    With ``--workers`` > 1 each worker process writes whole shards (one shard per task):
    no clip arrays cross processes and the HDF5 writing runs in parallel too. A shard's
    bytes depend only on its clips, so the output does not depend on the worker count.
    """
    by_shard: dict[int, list] = {i: [] for i in todo}
    for i, task in tasks:
        by_shard[i].append(task)
    jobs = [(i, plan[i], by_shard[i], str(out), record_json, opts, vggish) for i in todo]
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if opts.workers > 1 and len(jobs) > 1:
            _preload_for_fork(vggish)
            pool = stack.enter_context(ProcessPoolExecutor(
                min(opts.workers, len(jobs)), mp_context=_mp_context(), initializer=_init_worker, initargs=init))
            futures = {pool.submit(_write_shard, job): job[0] for job in jobs}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.update(len(plan[i][2]))
            except BaseException:
                for f in futures:
                    f.cancel()  # shards already being written finish (and stay valid for --resume)
                raise
        else:
            _init_worker(*init)
            for job in jobs:
                results[job[0]] = _write_shard(job, on_clip=lambda: bar.update(1))


def _write_shard(job, on_clip=None) -> dict:
    """Compute the clips of one shard and write it (temporary name, check, hash, rename)."""
    i, entry, tasks, out, record_json, opts, vggish = job
    writer = _Pending(Path(out), entry, opts, vggish, json.loads(record_json)["setting"])
    try:
        for task in tasks:
            status, payload = _work(task)
            if status == "ok":
                writer.add(payload)
            elif opts.on_bad_input == "stop":
                raise DataError(f"{payload}")
            else:
                log.warning("skipping: %s", payload)
                writer.skip(payload)
            if on_clip is not None:
                on_clip()
        return _finish(writer, Path(out), entry, record_json, opts)
    finally:
        writer.abort()  # no-op once finished; else removes the temporary file


def _mp_context():
    import multiprocessing as mp

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _preload_for_fork(vggish: bool) -> None:
    """Import torch once here when workers will need it (VGGish), so forked workers
    inherit it instead of each importing it. Log-mel pickles of float tensors are
    rebuilt without torch (``avsprep.audio.load_logmel_pickle``)."""
    if vggish:
        import torch  # noqa: F401


class _Pending:
    """One shard being written under its temporary name."""

    def __init__(self, out: Path, entry, opts: BuildOptions, vggish: bool, setting: Optional[str] = None):
        sp, n, cs = entry
        (out / sp).mkdir(parents=True, exist_ok=True)
        self.final = out / sp / shard_name(n)
        self.tmp = tmp_path_for(self.final)
        self.writer = ShardWriter(self.tmp, len(cs), opts.crop_size, vggish, setting=setting)
        self.names, self.boxes, self.skipped, self.sources = [], [], [], set()
        self.done = False

    def add(self, arrays: dict) -> None:
        row = self.writer.add(arrays)
        b = arrays["boxes"].copy()
        b[:, 0] = row
        self.boxes.append(b)
        self.names.append(arrays["video"])
        self.sources.add(arrays["audio_source"])

    def skip(self, message: str) -> None:
        m = re.match(r"clip (.+?): ", message)
        self.skipped.append({"clip": m.group(1) if m else "?", "reason": message})

    def abort(self) -> None:
        if not self.done:
            self.writer.abort()
            self.tmp.unlink(missing_ok=True)


def _finish(p: _Pending, out: Path, entry, record_json: str, opts: BuildOptions) -> dict:
    """Close, re-open and check, hash, rename, write the sha256 sidecar."""
    from avsprep.audio import resampler_name

    sp, n, cs = entry
    rec = json.loads(record_json)
    source = ",".join(sorted(p.sources)) or "none"
    attrs = {
        "schema_version": SCHEMA_VERSION, "toolkit_version": __version__, "split": sp,
        "setting": rec["setting"], "frames": 10 if rec["setting"] == "avss" else FRAMES, "frame_size": FRAME_SIZE, "crop_size": opts.crop_size,
        "crop_policy": opts.crop_policy, "audio_source": source,
        "resampler": resampler_name() if "wav" in p.sources else "",
        "vggish_sha256": rec["vggish_sha256"], "clips": json.dumps([c.name for c in cs]),
        "skipped": json.dumps(p.skipped), "build_options": record_json,
        "box_columns": json.dumps(["clip_row", "frame", "class", "xmin", "ymin", "xmax", "ymax"]),
        "mask_decoding": json.dumps(MASK_DECODING[rec["setting"]]),
    }
    if rec["setting"] == "avss":  # what the official loader did to these clips (avsprep.build.avss_clip)
        attrs.update(subsets=json.dumps(sorted({c.subset for c in cs})), avss_mask_decoding=rec["avss_mask_decoding"],
                     padding=rec["padding"], geometry=rec["geometry"], frames_real=json.dumps(
                         {sub: n for sub, n in (("v1s", 5), ("v1m", 5), ("v2", 10))}))
    boxes = np.concatenate(p.boxes) if p.boxes else np.zeros((0, 7), np.float32)
    p.writer.close(boxes, attrs)
    problems = check_shard_file(p.tmp, split=sp, clips=p.names)
    if problems:
        raise IntegrityError(f"{p.final}: the written shard failed its check ({problems[0].message})")
    digest = file_sha256(p.tmp)
    commit(p.tmp, p.final)
    p.done = True
    write_text(p.final.with_name(p.final.name + ".sha256"), digest + "\n")
    return {"names": p.names, "skipped": p.skipped, "audio_source": source, "kept": False,
            "sha256": digest}


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


def _summary(out: Path, manifest: dict, results: dict, n_built: int, secs: float) -> dict:
    kept = sum(1 for r in results.values() if r.get("kept"))
    per = {sp: {"clips": v["clips"], "shards": len(v["shards"])} for sp, v in manifest["splits"].items()}
    total = sum(v["clips"] for v in per.values())
    size = sum(e["bytes"] for v in manifest["splits"].values() for e in v["shards"])
    parts = ", ".join(f"{sp} {v['clips']} clips in {v['shards']} shard(s)" for sp, v in per.items())
    text = (f"Wrote {out}: {parts}; {size / 2**20:.1f} MiB; {len(manifest['skipped'])} clip(s) skipped"
            + (f"; kept {kept} finished shard(s)" if kept else "")
            + f"; {n_built} clips built in {secs:.1f} s ({n_built / max(secs, 1e-9):.1f} clips/s).")
    for s in manifest["skipped"]:
        text += f"\n  skipped {s['clip']} ({s['split']}): {s['reason']}"
    return {"text": text, "output": str(out), "splits": per, "clips": total, "bytes": size,
            "skipped": manifest["skipped"], "kept_shards": kept, "built_clips": n_built,
            "seconds": round(secs, 3), "clips_per_s": round(n_built / max(secs, 1e-9), 2)}
