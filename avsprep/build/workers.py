"""Writing the planned shards, in this process or in worker processes.

A task is one shard: compute its clips (``clip_arrays``, plus VGGish embeddings
when asked), write them with a ``ShardWriter`` under a temporary name, close,
re-open and check, hash, rename, write the ``.sha256`` sidecar (``_Pending`` and
``_finish``, read top to bottom in ``_write_shard``). A shard's bytes depend only
on its clips, so the output does not depend on the worker count.

Error policy for a clip whose frame, mask or audio cannot be read
(``BuildOptions.on_bad_input``), one handler per value in ``ON_BAD_INPUT``:

- ``"stop"``: raise ``DataError`` with the clip's one-line message; the build
  stops (exit 1) and the shards finished so far stay for ``--resume``;
- ``"skip"``: log a warning and leave the clip out; it is listed (clip name and
  reason) in the shard's ``skipped`` attribute and the manifest's ``skipped``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from avsprep import __version__
from avsprep.audio import resampler_name
from avsprep.build import provenance
from avsprep.build.clip import clip_arrays, padded_steps
from avsprep.common.atomic import commit, file_sha256, tmp_path_for, write_text
from avsprep.common.errors import DataError, IntegrityError
from avsprep.shards.schema import FRAME_SIZE, MASK_DECODING, SCHEMA_VERSION, SHARD_BOX_COLUMNS
from avsprep.shards.verify import check_shard_file
from avsprep.shards.writer import ShardWriter

log = logging.getLogger("avsprep.build")


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


# ------------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class BadClip:
    """A clip that could not be read: its name and the one-line reason (the ``DataError`` text)."""

    clip: str
    reason: str
    inputs: Optional[dict] = None  # the clip's input record (avsprep.build.provenance)


def _stop(bad: BadClip, pending: "_Pending") -> None:
    raise DataError(bad.reason)


def _skip(bad: BadClip, pending: "_Pending") -> None:
    log.warning("skipping: %s", bad.reason)
    pending.skipped.append({"clip": bad.clip, "reason": bad.reason})
    pending.inputs[bad.clip] = bad.inputs


ON_BAD_INPUT: dict[str, Callable[[BadClip, "_Pending"], None]] = {"stop": _stop, "skip": _skip}


# ------------------------------------------------------------------------------- per process state

_W: dict = {}


@contextlib.contextmanager
def _one_torch_thread():
    """VGGish on one thread, so embeddings are bit-identical in every worker layout."""
    import torch  # lazy: only with --vggish-weights (avsprep stays torch-free otherwise)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


def _init_worker(layout, crop_size, crop_policy, vggish_weights) -> None:
    _W.clear()
    _W.update(layout=layout, crop_size=crop_size, crop_policy=crop_policy, vggish=None)
    if vggish_weights:
        from avsprep.audio import load_vggish  # lazy: imports torch

        _W["vggish"] = load_vggish(vggish_weights)


def _work(task) -> dict | BadClip:
    """The arrays of one clip (with its input record under ``"inputs"``), or ``BadClip``; never
    raises DataError. The input record is taken first, before the files are read."""
    clip, boxes, label = task
    layout = _W["layout"]
    inputs = provenance.clip_inputs(layout, clip, boxes, label)
    try:
        out = clip_arrays(layout, clip, boxes, _W["crop_size"], _W["crop_policy"], label)
    except DataError as exc:
        return BadClip(clip.name, str(exc), inputs)
    out["inputs"] = inputs
    if _W["vggish"] is not None:
        with _one_torch_thread() as torch, torch.no_grad():
            x = torch.from_numpy(out["audio_logmel"][:, None].copy())
            out["audio_vggish"] = _W["vggish"](x).numpy().astype(np.float32)
        out["audio_vggish"][padded_steps(layout, clip)] = 0.0  # as the official AVSS code does
    return out


# ------------------------------------------------------------------------------- all shards


def write_planned(out, plan, results, todo, tasks, init, record_json, opts, vggish, bar) -> None:
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


def _mp_context():
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _preload_for_fork(vggish: bool) -> None:
    """Import torch once here when workers will need it (VGGish), so forked workers
    inherit it instead of each importing it. Log-mel pickles of float tensors are
    rebuilt without torch (``avsprep.audio.load_logmel_pickle``)."""
    if vggish:
        import torch  # noqa: F401


# ------------------------------------------------------------------------------- one shard


def _write_shard(job, on_clip=None) -> dict:
    """Compute the clips of one shard and write it: temporary name, check, hash, rename."""
    i, entry, tasks, out, record_json, opts, vggish = job
    layout = _W["layout"]
    pending = _Pending(Path(out), entry, opts, vggish, layout.setting)
    handle_bad = ON_BAD_INPUT[opts.on_bad_input]
    try:
        for task in tasks:
            result = _work(task)
            if isinstance(result, BadClip):
                handle_bad(result, pending)
            else:
                pending.add(result)
            if on_clip is not None:
                on_clip()
        return _finish(pending, layout, entry, record_json, opts)
    finally:
        pending.abort()  # no-op once finished; else removes the temporary file


class _Pending:
    """One shard being written under its temporary name."""

    def __init__(self, out: Path, entry, opts, vggish: bool, setting: str):
        sp, n, cs = entry
        (out / sp).mkdir(parents=True, exist_ok=True)
        self.final = out / sp / shard_name(n)
        self.tmp = tmp_path_for(self.final)
        self.writer = ShardWriter(self.tmp, len(cs), opts.crop_size, vggish, setting=setting)
        self.names, self.boxes, self.skipped, self.sources = [], [], [], set()
        self.inputs: dict = {}  # clip name -> its input record (skipped clips too)
        self.done = False

    def add(self, arrays: dict) -> None:
        row = self.writer.add(arrays)
        b = arrays["boxes"].copy()
        b[:, 0] = row
        self.boxes.append(b)
        self.names.append(arrays["video"])
        self.sources.add(arrays["audio_source"])
        self.inputs[arrays["video"]] = arrays["inputs"]

    def abort(self) -> None:
        if not self.done:
            self.writer.abort()
            self.tmp.unlink(missing_ok=True)


def _finish(p: _Pending, layout, entry, record_json: str, opts) -> dict:
    """Close, re-open and check, hash, rename, write the input record, then the sha256 sidecar
    (the mark of a finished shard)."""
    sp, n, cs = entry
    rec = json.loads(record_json)
    source = ",".join(sorted(p.sources)) or "none"
    attrs = {
        "schema_version": SCHEMA_VERSION, "toolkit_version": __version__, "split": sp,
        "setting": layout.setting, "frames": layout.steps, "frame_size": FRAME_SIZE, "crop_size": opts.crop_size,
        "crop_policy": opts.crop_policy, "audio_source": source,
        "resampler": resampler_name() if "wav" in p.sources else "",
        "vggish_sha256": rec["vggish_sha256"], "clips": json.dumps([c.name for c in cs]),
        "skipped": json.dumps(p.skipped), "build_options": record_json,
        "box_columns": json.dumps(SHARD_BOX_COLUMNS),
        "mask_decoding": json.dumps(MASK_DECODING[layout.setting]),
        **layout.shard_attrs(cs),
    }
    boxes = np.concatenate(p.boxes) if p.boxes else np.zeros((0, len(SHARD_BOX_COLUMNS)), np.float32)
    p.writer.close(boxes, attrs)
    problems = check_shard_file(p.tmp, split=sp, clips=p.names)
    if problems:
        raise IntegrityError(f"{p.final}: the written shard failed its check ({problems[0].message})")
    digest = file_sha256(p.tmp)
    commit(p.tmp, p.final)
    p.done = True
    provenance.write_record(p.final, rec, p.inputs)
    write_text(p.final.with_name(p.final.name + ".sha256"), digest + "\n")
    return {"names": p.names, "skipped": p.skipped, "audio_source": source, "kept": False,
            "sha256": digest}
