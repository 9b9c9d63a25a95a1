"""Robustness run behind docs/RELIABILITY.md: fuzz the XML reader, kill builds, fill the disk, damage inputs.

    python tools/robustness.py                    # 10,000 parse cases, 20 kill trials (make robustness)
    python tools/robustness.py --cases 500 --trials 3

Uses the same mutation engine and fault helpers as the tests
(tests/system/test_fuzz_voc.py, tests/system/test_faults_build.py; helpers in tests/helpers/), only many more cases.
Progress goes to stderr; the last line on stdout is one JSON document with the
counts. Exit 1 when anything failed (an unhandled exception, a hang, a broken
invariant, a finished-looking file after a kill, a resume that differs).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("AVS_NO_PROGRESS", "1")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- parse fuzz

def fuzz_parse(cases: int, start: int) -> dict:
    from tests.helpers.fuzz import Hang, check_result, guarded_read, make_case

    by_code = collections.Counter()
    by_op = collections.Counter()
    out = {"cases": 0, "readable": 0, "unreadable": 0, "boxes": 0, "findings": 0,
           "unhandled_exceptions": 0, "hangs": 0, "invariant_violations": 0, "max_parse_ms": 0.0,
           "examples": []}
    for i in range(start, start + cases):
        if i % 10 == 9:  # one case in ten: purely random bytes
            rng = random.Random(i)
            name, data, ops = "random.xml", rng.randbytes(rng.randint(0, 4096)), ["random_bytes"]
        else:
            name, data, ops = make_case(i)
        by_op.update(ops)
        out["cases"] += 1
        try:
            res, secs = guarded_read(data, name)
        except Hang as exc:
            out["hangs"] += 1
            out["examples"].append({"case": i, "ops": ops, "hang": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - counting exactly these
            out["unhandled_exceptions"] += 1
            out["examples"].append({"case": i, "ops": ops, "exception": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        out["max_parse_ms"] = max(out["max_parse_ms"], round(secs * 1000, 2))
        try:
            check_result(res, name)
        except AssertionError as exc:
            out["invariant_violations"] += 1
            out["examples"].append({"case": i, "ops": ops, "invariant": str(exc)[:300]})
        out["readable" if res.readable else "unreadable"] += 1
        out["boxes"] += len(res.boxes)
        out["findings"] += len(res.findings)
        by_code.update(f.code for f in res.findings)
        if (i - start + 1) % 2000 == 0:
            say(f"parse: {i - start + 1}/{cases}")
    out["findings_by_code"] = dict(by_code.most_common())
    out["cases_by_operator"] = dict(by_op.most_common())
    out["examples"] = out["examples"][:10]
    return out


# ----------------------------------------------------------------------------- build faults

def build_faults(work: Path, clips: int, cps: int, trials: int, seed: int) -> dict:
    from avsprep.importer import run_import
    from avsprep.demo import write_demo
    from tests.helpers.faults import kill_trial, run_build, tree_bytes

    root, table = work / "root", work / "boxes.csv"
    write_demo(root, clips=clips, seed=0, quiet=True)
    run_import(root, table, quiet=True)
    clean = work / "clean"
    extra = ("--clips-per-shard", cps)
    times = []
    for target in (clean, work / "clean-2"):  # twice: the bytes must agree, and the faster sets the kill window
        t0 = time.monotonic()
        res = run_build(table, root, target, *extra)
        times.append(time.monotonic() - t0)
        if res.returncode != 0:
            raise SystemExit(f"clean build failed: {res.stderr[-2000:]}")
    secs = min(times)
    want = tree_bytes(clean)
    identical = tree_bytes(work / "clean-2") == want
    shutil.rmtree(work / "clean-2")
    rng = random.Random(seed)
    out = {"clips": clips, "clips_per_shard": cps, "shards": sum(1 for k in want if k.endswith(".h5")),
           "clean_build_s": round(secs, 2), "clean_builds_identical": identical, "trials": 0, "killed_mid_build": 0, "finished_before_kill": 0,
           "finished_looking_problems": 0, "resume_failures": 0, "byte_mismatches": 0, "files_lost": 0,
           "killed_with_tmp_file": 0, "killed_with_claimed_shards": 0, "details": []}
    for t in range(trials):
        target = work / f"trial-{t}"
        workers = 2 if t % 4 == 3 else 1  # a quarter of the trials with a worker pool
        delay = rng.uniform(0.02, 0.9) * secs  # some kills land in start-up, most mid-build
        r = kill_trial(table, root, target, delay, extra=(*extra, "--workers", workers))
        got = tree_bytes(target) if r["resume_rc"] == 0 else {}
        lost = [k for k in want if got.get(k) != want[k]]
        out["trials"] += 1
        out["finished_before_kill"] += bool(r["manifest"])
        out["killed_mid_build"] += not r["manifest"]
        out["finished_looking_problems"] += len(r["problems"])
        out["resume_failures"] += r["resume_rc"] != 0
        out["byte_mismatches"] += bool(lost) or set(got) != set(want)
        out["files_lost"] += len(lost)
        out["killed_with_tmp_file"] += r["tmp_files"] > 0
        out["killed_with_claimed_shards"] += r["shards_claimed"] > 0
        out["details"].append({"delay_s": r["delay"], "workers": workers, "claimed": r["shards_claimed"],
                               "unclaimed": r["shards_unclaimed"], "tmp": r["tmp_files"],
                               "manifest": r["manifest"], "problems": r["problems"], "resume_rc": r["resume_rc"],
                               "lost": lost[:5]})
        say(f"kill trial {t + 1}/{trials}: delay {r['delay']:.2f}s, claimed {r['shards_claimed']}, "
            f"tmp {r['tmp_files']}, problems {len(r['problems'])}, resume rc {r['resume_rc']}, lost {len(lost)}")
        shutil.rmtree(target, ignore_errors=True)
    return out


def disk_full(work: Path) -> dict:
    from tests.helpers.faults import check_disk_full_outcome, run_build, small_tmpfs

    root, table = work / "root", work / "boxes.csv"
    first = next((work / "clean").rglob("shard-00000.h5")).stat().st_size
    mnt = work / "small"
    with small_tmpfs(mnt, f"{int(first * 1.5) // 1024}k") as mounted:
        if not mounted:
            return {"method": "tmpfs unavailable (not root?)", "ok": None}
        out = mnt / "shards"
        res = run_build(table, root, out, "--clips-per-shard", 2)
        try:
            check_disk_full_outcome(res.returncode, res.stderr, out)
            ok, why = True, ""
        except AssertionError:
            ok, why = False, f"exit {res.returncode}" + (", traceback" if "Traceback" in res.stderr else "")
        return {"method": f"tmpfs size {int(first * 1.5) // 1024}k", "exit_code": res.returncode,
                "traceback": "Traceback" in res.stderr, "ok": ok, "failure": why,
                "stderr_last_line": (res.stderr.strip().splitlines() or [""])[-1][:300]}


def bad_inputs(work: Path) -> dict:
    from avsprep.common.errors import AvsError
    from avsprep.build import BuildOptions, build_shards
    from avsprep.shards import ShardSet
    from tests.helpers.faults import BAD_KINDS, corrupt, finished_looking_problems

    root, table = work / "root", work / "boxes.csv"
    out = {"cases": 0, "ok": 0, "failed": []}
    for kind in BAD_KINDS:
        for policy in ("stop", "skip"):
            out["cases"] += 1
            case = work / f"bad-{kind}-{policy}"
            shutil.copytree(root, case / "root")
            marker = case / "PWNED"
            clip, path = corrupt(case / "root", kind, marker)
            shards = case / "shards"
            opts = BuildOptions(splits=["test"], clips_per_shard=2, on_bad_input=policy)
            try:
                summary = build_shards(table, case / "root", shards, opts, quiet=True)
                ok = (policy == "skip" and path.name in summary["text"]
                      and clip not in ShardSet(shards).names)
                why = "" if ok else "skip did not name the file or kept the clip"
            except AvsError as exc:
                ok = policy == "stop" and path.name in str(exc) and not (shards / "manifest.json").exists()
                why = "" if ok else f"unexpected error: {exc}"[:300]
            except Exception as exc:  # noqa: BLE001
                ok, why = False, f"unhandled {type(exc).__name__}: {exc}"[:300]
            if marker.exists():
                ok, why = False, "the hostile pickle ran code"
            if finished_looking_problems(shards)[0]:
                ok, why = False, "finished-looking file left"
            out["ok"] += ok
            if not ok:
                out["failed"].append({"kind": kind, "policy": policy, "why": why})
            shutil.rmtree(case, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- hostile inputs (issue 21)

def run_case(counts: collections.Counter, failed: list, name: str, folder: Path, setup, run,
             expect_finding: Optional[str] = None) -> tuple[str, str]:
    """One hostile case, classified into ``counts``: ``setup(folder)`` writes the inputs, ``run(folder,
    out, inputs)`` is the command under test and returns its findings (objects with ``.code`` or
    dicts with ``"code"``). clean_error: an ``AvsError`` in one line; finding: ``expect_finding``
    among the findings; crash: any other exception; silent: anything else, or a file written
    outside ``folder/out`` or an input changed. Returns (class, the error or finding message)."""
    from avsprep.common.errors import AvsError
    from tests.helpers.hostile import tree

    folder.mkdir(parents=True)
    out_dir = folder / "out"
    inputs = setup(folder)
    before = tree(folder)
    said = ""
    try:
        res = run(folder, out_dir, inputs)
        res = res if isinstance(res, list) else []  # a command's other results carry no findings
        codes = [f.get("code") if isinstance(f, dict) else getattr(f, "code", None) for f in res]
        hits = [f for f, code in zip(res, codes) if expect_finding and code == expect_finding]
        kind = "finding" if expect_finding and hits else "silent"
        if hits:
            said = hits[0]["message"] if isinstance(hits[0], dict) else hits[0].message
    except AvsError as exc:
        kind = "clean_error" if "\n" not in str(exc) else "silent"
        said = str(exc)
    except Exception as exc:  # noqa: BLE001
        kind = "crash"
        said = traceback.format_exception_only(exc)[-1].strip()
        failed.append({"case": name, "why": said[:200]})
    outside = {k: v for k, v in tree(folder).items() if not k.startswith("out/")}
    if kind != "crash" and outside != before:
        kind = "silent"  # wrote outside out/ or changed an input
    counts[kind] += 1
    if kind == "silent":
        failed.append({"case": name, "why": "no error, or a file written outside the output / an input changed"})
    return kind, said


def hostile_inputs(work: Path) -> dict:
    """Names that would become paths outside the output folder, decompression bombs, deep JSON: each case
    must end as a clean one-line error or a finding, with nothing written outside its output folder and
    its input files unchanged. Counts per class: clean_error / finding / crash / silent."""
    import torch

    from avsprep.annotations.createml import parse_createml
    from avsprep.annotations.propose import ProposalWriter
    from avsprep.common.images import image_size, open_image
    from avsprep.datasets.avss import read_avss_metadata
    from avsprep.demo.avsbench import write_avsbench_demo
    from avstrain.mask_files import MaskSink, write_binary_masks
    from tests.helpers.hostile import DEEP_JSON, HOSTILE, bomb_jpeg, bomb_png, s4_csv

    counts = collections.Counter()
    failed = []

    def case(name: str, folder: Path, setup, run, expect_finding: Optional[str] = None) -> None:
        run_case(counts, failed, name, folder, setup, run, expect_finding)

    def name_of(folder: Path, raw: str) -> str:
        return str(folder / "abs_esc") if raw == "ABSOLUTE" else raw

    def avss_csv(folder: Path, raw: str) -> Path:
        p = folder / "metadata.csv"
        with open(p, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(
                [["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"],
                 ["v", name_of(folder, raw), 0, 0, "dog", "train", "v1s"]])
        return p

    def predict(folder: Path, out: Path, raw: str):
        batch = {"video": [name_of(folder, raw)], "label": torch.tensor([0]),
                 "mask_valid": torch.ones(1, 2, dtype=torch.bool),
                 "frames": torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8), "masks": torch.zeros(1, 2, 4, 4)}
        sink = MaskSink(out, "test", "s4", ["dog"], overlay=True)
        return write_binary_masks(torch.ones(2, 1, 4, 4), batch, sink, by_category=True)

    def propose(folder: Path, out: Path, raw: str):
        out.mkdir()
        return ProposalWriter(out, "masks").propose(Path(name_of(folder, raw)), "v_1", [(0, 0, 2, 2)], "dog", 4, 4)

    for i, raw in enumerate(HOSTILE + ["ABSOLUTE"]):
        base = work / "hostile"
        case(f"demo --like {raw!r}"[:60], base / f"demo-{i}",
             lambda f, raw=raw: s4_csv(f / "s4_meta_data.csv", ["ok1", "ok2", name_of(f, raw)]),
             lambda f, out, like: write_avsbench_demo(out, like=like, quiet=True))
        case(f"avss uid {raw!r}"[:60], base / f"avss-{i}", lambda f, raw=raw: avss_csv(f, raw),
             lambda f, out, meta: read_avss_metadata(meta))
        case(f"predict clip {raw!r}"[:60], base / f"predict-{i}", lambda f, raw=raw: raw,
             lambda f, out, raw: predict(f, out, raw))
        if raw in ("../../../../../esc_zz", "..", "ABSOLUTE"):  # the names that leave the folder
            case(f"proposal target {raw!r}"[:60], base / f"propose-{i}", lambda f, raw=raw: raw,
                 lambda f, out, raw: propose(f, out, raw))
    for make in (bomb_png, bomb_jpeg):
        case(f"open_image {make.__name__}", work / "hostile" / f"open-{make.__name__}",
             lambda f, make=make: make(f / "x.img"), lambda f, out, p: open_image(p, "c", "frame 1", "RGB"))
        case(f"image_size {make.__name__}", work / "hostile" / f"size-{make.__name__}",
             lambda f, make=make: make(f / "x.img"), lambda f, out, p: image_size(p))
    case("createml 100000 deep", work / "hostile" / "deep-json", lambda f: DEEP_JSON,
         lambda f, out, text: parse_createml(text, "x.json").findings, expect_finding="json-too-deep")
    return {"cases": sum(counts.values()), **{k: counts.get(k, 0) for k in ("clean_error", "finding", "crash", "silent")},
            "failed": failed}


# ----------------------------------------------------------------------------- stale inputs, task mismatches (issue 23)

def stale_and_mismatch(work: Path) -> dict:
    """Stale shards (an input changed after the build) and task mismatches. Each case ends as
    handled (the documented outcome: stale shard rebuilt, change listed), a clean one-line error
    (the refusal expected), a wrong error (one line, another message: e.g. raised by a worker
    after training began), a traceback, or silent (exit 0 with a wrong or unchanged result)."""
    from click.testing import CliRunner

    from avsprep.build import BuildOptions, build_shards
    from avsprep.cli import cli as prep
    from avsprep.datasets.avss_classes import AVSS_CLASSES
    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.demo import write_demo
    from avsprep.demo.avss import write_avss_demo
    from avsprep.importer import run_import
    from avstrain.cli import cli as train
    from avstrain.evaluation import derangement
    from tests.helpers.report import random_checkpoint
    from tests.helpers.train import untrained_checkpoint

    counts = collections.Counter()
    failed = []

    def record(name: str, kind: str, why: str = "") -> None:
        counts[kind] += 1
        if kind in ("traceback", "silent", "wrong_error"):
            failed.append({"case": name, "why": why[:300]})

    def cli_case(name: str, command, args: list, want: str) -> None:
        """An error case: exit 1 with one ``Error:`` line containing ``want``."""
        res = CliRunner().invoke(command, [str(a) for a in args])
        text = res.output.strip()
        if res.exception is not None and not isinstance(res.exception, SystemExit) or "Traceback" in text:
            record(name, "traceback", text[-300:] or repr(res.exception))
        elif res.exit_code == 1 and len(text.splitlines()) == 1 and want in text:
            record(name, "clean_error")
        elif res.exit_code == 1 and len(text.splitlines()) == 1:  # one line, but not the refusal expected
            record(name, "wrong_error", text[-300:])
        else:
            record(name, "silent", f"exit {res.exit_code}: {text[-300:]}")

    def build(table, root, out, resume=False):
        return build_shards(table, root, out, BuildOptions(splits=["test"], clips_per_shard=1, resume=resume),
                            quiet=True)

    # -- stale inputs: build, change the release, resume / verify --inputs
    base = work / "stale"
    root = base / "root"
    write_demo(root, clips=12, seed=0, quiet=True)
    table = base / "boxes.csv"
    run_import(root, table, quiet=True)
    layout = AVSBenchLayout.from_root(root)
    clips = layout.clips(["test"])
    changes = {
        "frame replaced": lambda: layout.frame_path(clips[1], 3).write_bytes(layout.frame_path(clips[1], 2).read_bytes()),
        "mask edited": lambda: layout.mask_path(clips[1], 2).write_bytes(layout.mask_path(clips[1], 2).read_bytes() + b"\0"),
        "log-mel pickle removed": lambda: layout.logmel_path(clips[1]).unlink(),
    }
    for i, (name, change) in enumerate(changes.items()):
        out = base / f"shards-{i}"
        build(table, root, out)
        keep = (out / "test" / "shard-00000.h5").read_bytes()
        snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        change()
        res = CliRunner().invoke(prep, ["verify", str(out), "--inputs", str(root)])
        lines = [ln for ln in res.output.splitlines() if "input-changed" in ln]
        ok = res.exit_code == 1 and len(lines) == 1 and clips[1].name in lines[0]
        record(f"verify --inputs after {name}", "handled" if ok else "silent", res.output[-300:])
        try:
            summary = build(table, root, out, resume=True)
            ok = ([r["shard"] for r in summary["rebuilt_shards"]] == ["test/shard-00001.h5"]
                  and (out / "test" / "shard-00000.h5").read_bytes() == keep)
            record(f"build --resume after {name}", "handled" if ok else "silent", summary["text"])
        except Exception as exc:  # noqa: BLE001
            record(f"build --resume after {name}", "traceback", traceback.format_exception_only(exc)[-1])
        for p in [p for p in root.rglob("*") if p.is_file() and p not in snapshot]:
            p.unlink()
        for p, data in snapshot.items():  # the release as it was
            p.write_bytes(data)
    out = base / "shards-touch"
    build(table, root, out)
    before = {p.name: p.read_bytes() for p in out.rglob("shard-*")}
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    summary = build(table, root, out, resume=True)
    same = {p.name: p.read_bytes() for p in out.rglob("shard-*")} == before
    record("build --resume after mtimes moved only", "handled" if same and summary["kept_shards"] == 2 else "silent",
           summary["text"])
    res = CliRunner().invoke(prep, ["verify", str(out), "--inputs", str(root)])
    record("verify --inputs, unchanged bytes", "handled" if res.exit_code == 0 else "silent", res.output[-300:])

    # -- task mismatches and the shuffle ablation
    tiny = work / "tiny"
    tiny.mkdir()
    ckpt, s4_shards = random_checkpoint(tiny)
    avss_ckpt = untrained_checkpoint(tiny / "avss" / "best.pt", "avss-demo", list(AVSS_CLASSES))
    for command in ("evaluate", "predict"):
        extra = ["-o", tiny / "pred"] if command == "predict" else []
        cli_case(f"AVSS checkpoint on S4 shards: {command}", train,
                 [command, avss_ckpt, s4_shards, *extra, "--device", "cpu", "--quiet"], "needs shards built from an AVSS")
    one = work / "one"
    shutil.copytree(tiny / "avstrain-demo", one / "root")
    meta = one / "root" / "s4_meta_data.csv"
    lines = meta.read_text().splitlines(keepends=True)
    meta.write_text("".join(ln for ln in lines if ln != [x for x in lines if x.rstrip().endswith(",test")][1]))
    run_import(one / "root", one / "boxes.csv", quiet=True)
    build_shards(one / "boxes.csv", one / "root", one / "shards", BuildOptions(splits=["test"], crop_size=32),
                 quiet=True)
    for args in (["--audio-ablation", "shuffle"], ["--per-clip", one / "clips.csv"]):
        cli_case(f"shuffle on a 1-clip split: evaluate {args[0]}", train,
                 ["evaluate", ckpt, one / "shards", *args, "--device", "cpu", "--quiet"], "needs at least two clips")
    cli_case("shuffle on a 1-clip split: report", train,
             ["report", ckpt, one / "shards", "-o", one / "report", "--device", "cpu", "--quiet"],
             "needs at least two clips")
    own = [n for n in range(2, 200) for i, j in enumerate(derangement(n, seed=n)) if i == j]
    record("derangement n = 2..199: no clip gets its own audio", "silent" if own else "handled", str(own[:5]))
    avss = work / "avss"
    write_avss_demo(avss / "root", clips=3, seed=2, quiet=True)
    run_import(avss / "root", avss / "boxes.csv", quiet=True)
    build_shards(avss / "boxes.csv", avss / "root", avss / "shards", BuildOptions(crop_size=32), quiet=True)
    cli_case("binary preset on AVSS shards with v2 clips: train, 2 workers", train,
             ["train", avss / "shards", "-o", avss / "run", "--preset", "demo", "--set", "channel=16", "--set",
              "image_size=64", "--set", "workers=2", "--batch-size", "2", "--epochs", "1", "--device", "cpu",
              "--quiet"], "these hold v2 clips")
    for flags in (["-o", avss / "m1", "--overlay"], ["--labelimg", avss / "props"]):
        cli_case(f"predict {flags[-1] if flags[-1] == '--overlay' else '--labelimg'} on an AVSS model", train,
                 ["predict", avss_ckpt, avss / "shards", *flags, "--device", "cpu", "--quiet"], "AVSS semantic model")
    return {"cases": sum(counts.values()),
            **{k: counts.get(k, 0) for k in ("handled", "clean_error", "wrong_error", "traceback", "silent")},
            "failed": failed}
def weights_and_shards(work: Path) -> dict:
    """Issue 21's numbers that cannot be right: weight files and checkpoints with NaN/inf or integer-cast
    weights, checkpoint configs out of range, a --resume that changes the config, shards edited by hand
    and re-hashed, a mask of another size than its frame, deep or aliased YAML, a bomb frame in the demo's
    raw videos. Counted like ``hostile_inputs``: clean_error / finding / crash / silent."""
    import json
    import shutil

    import numpy as np
    import torch
    from click.testing import CliRunner
    from PIL import Image

    from avsprep.annotations.propose import run_propose
    from avsprep.audio import VGGish, load_vggish
    from avsprep.build import BuildOptions, build_shards
    from avsprep.common.errors import AvsError
    from avsprep.datasets.avsbench import AVSBenchLayout
    from avsprep.demo import write_demo
    from avsprep.importer import run_import
    from avsprep.shards import ShardSet, verify_shards
    from avstrain.checkpoints import init_from, load_checkpoint, system_from_checkpoint
    from avstrain.cli import cli as avstrain_cli
    from avstrain.config import apply, load_file, load_preset
    from avstrain.convert import official_to_checkpoint
    from avstrain.models import build_avs_model
    from avstrain.models.backbones import ResNet50Backbone
    from avstrain.models.weights import ours_to_official
    from avstrain.system import build_system
    from tests.helpers.hostile import (DEEP_JSON, bomb_png, edit_first_shard, nan_first, replace_dataset,
                                       tiny_checkpoint)

    counts = collections.Counter()
    failed = []
    base = work / "weights-shards"

    outcomes = []

    def case(name, setup, run, expect_finding=None):
        kind, said = run_case(counts, failed, name, base / f"{sum(counts.values()):02d}", setup, run, expect_finding)
        outcomes.append({"case": name, "class": kind, "message": said.replace(str(work), "TMP")[:240]})

    def cli_errors(result):
        """A CLI run as the cases see it: exit 0 -> no findings; a one-line 'Error:' -> AvsError."""
        if result.exit_code == 0:
            return []
        if "Traceback" in result.output or result.exception and not isinstance(result.exception, SystemExit):
            raise RuntimeError(result.output[-300:])
        raise AvsError([ln for ln in result.output.splitlines() if ln.startswith("Error:")][-1])

    # --- shared inputs, made once: an official-format ResNet-50 file, demo shards and a demo run's config
    shared = work / "shared-inputs"
    shared.mkdir(parents=True)
    torch.manual_seed(0)
    official = ours_to_official(build_avs_model("resnet50").state_dict(), "resnet50")
    root = shared / "demo"
    write_demo(root, clips=12, seed=0, quiet=True)
    run_import(root, shared / "boxes.csv", quiet=True)
    build_shards(shared / "boxes.csv", root, shared / "shards", BuildOptions(crop_size=32), quiet=True)

    def official_file(edit):
        def setup(f):
            sd = {k: v.clone() for k, v in official.items()}
            changed = edit(sd)
            torch.save(changed if isinstance(changed, dict) else sd, f / "S4_best.pth")
            return f / "S4_best.pth"
        return setup

    # --- weights and checkpoints
    case("convert: official file with NaN weights", official_file(nan_first),
         lambda f, out, p: official_to_checkpoint(p, (out.mkdir(), out / "x.pt")[1]))
    case("convert: official file cast to int64", official_file(lambda sd: {k: v.long() for k, v in sd.items()}),
         lambda f, out, p: official_to_checkpoint(p, (out.mkdir(), out / "x.pt")[1]))
    case("init-from: official file with inf weights", official_file(lambda sd: sd["output_conv.4.bias"].fill_(np.inf)),
         lambda f, out, p: init_from(build_system(apply(load_preset("s4-resnet50-avsbench"),
                                                        {"audio_encoder": "precomputed"}, "x"), 23, True), p))
    case("evaluate: checkpoint with NaN weights", lambda f: tiny_checkpoint(f / "nan.pt", model_edit=nan_first),
         lambda f, out, p: system_from_checkpoint(load_checkpoint(p), p))
    case("evaluate: checkpoint cast to int64",
         lambda f: tiny_checkpoint(f / "int.pt", model_edit=lambda sd: sd.update({k: v.long() for k, v in sd.items()})),
         lambda f, out, p: system_from_checkpoint(load_checkpoint(p), p))
    case("init-from: checkpoint with NaN weights", lambda f: tiny_checkpoint(f / "nan.pt", model_edit=nan_first),
         lambda f, out, p: init_from(build_system(apply(load_preset("demo"), {"channel": 16}, "x"), 23, False), p))
    case("init-from: checkpoint with a NaN crop head",
         lambda f: tiny_checkpoint(f / "nan.pt", edit=lambda c: nan_first(c["crop_head"])),
         lambda f, out, p: init_from(build_system(apply(load_preset("demo"), {"channel": 16}, "x"), 23, False), p))
    for what, edit in (("NaN", nan_first), ("int64", lambda sd: sd.update(
            {k: v.long() for k, v in sd.items() if v.is_floating_point()}))):
        def backbone(f, edit=edit):
            sd = ResNet50Backbone().state_dict()
            edit(sd)
            torch.save(sd, f / "resnet50.pth")
            return f / "resnet50.pth"
        case(f"backbone_weights: ResNet-50 file with {what} weights", backbone,
             lambda f, out, p: ResNet50Backbone().load_pretrained(p))
    def vggish(f):
        sd = VGGish().state_dict()
        nan_first(sd)
        torch.save(sd, f / "vggish.pth")
        return f / "vggish.pth"
    case("vggish_weights: file with NaN weights", vggish, lambda f, out, p: load_vggish(p, check_hash=False))
    for label, edit in (("num_classes -5", lambda c: c.update(num_classes=-5)),
                        ("channel 200000", lambda c: c["config"].update(channel=200000)),
                        ("head_channels 10^7", lambda c: c["config"].update(head_channels=[128, 10**7])),
                        ("image_size 10^6", lambda c: c["config"].update(image_size=10**6)),
                        ("lr 'abc'", lambda c: c["config"].update(lr="abc")),
                        ("audio_kind unknown", lambda c: c.update(audio_kind="nope")),
                        ("config not a mapping", lambda c: c.update(config=[1, 2]))):
        case(f"checkpoint config: {label}", lambda f, edit=edit: tiny_checkpoint(f / "bad.pt", edit=edit),
             lambda f, out, p: system_from_checkpoint(load_checkpoint(p), p))

    def run_dir(f):
        (f / "run").mkdir()
        cfg = apply(load_preset("demo"), {"channel": 16}, "x")
        (f / "run" / "config.json").write_text(json.dumps(cfg.to_dict()))
        tiny_checkpoint(f / "run" / "last.pt")
        return f / "run"
    for sets in (["--set", "lr=0.5"], ["--set", "seed=7"], ["--lr", "0.5"]):
        case(f"train --resume {' '.join(sets)}", run_dir,
             lambda f, out, run, sets=sets: cli_errors(CliRunner().invoke(
                 avstrain_cli, ["train", str(shared / "shards"), "-o", str(run), "--resume", *sets])))

    # --- shards edited by hand and re-hashed
    def shards_copy(change=None, classes=None):
        def setup(f):
            shutil.copytree(shared / "shards", f / "shards")
            if change:
                edit_first_shard(f / "shards", change)
            if classes:
                m = f / "shards" / "manifest.json"
                doc = json.loads(m.read_text())
                doc["classes"] = doc["classes"][:classes]
                m.write_text(json.dumps(doc))
            return f / "shards"
        return setup

    def set_values(name, index, value):
        def change(h5):
            a = h5[name][()]
            a[index] = value
            h5[name][...] = a
        return change

    case("verify: S4 masks of 2", shards_copy(set_values("masks", (0, 0, 5, 5), 2)),
         lambda f, out, s: verify_shards(s), "shard-mask-values")
    case("verify: label 999", shards_copy(set_values("label", 0, 999)),
         lambda f, out, s: verify_shards(s), "shard-label")
    case("verify: 3 classes in the manifest, labels up to 15", shards_copy(set_values("label", slice(None), 15), 3),
         lambda f, out, s: verify_shards(s), "shard-label")
    case("verify: a box beyond the 224 px frame", shards_copy(set_values("boxes", (0, 5), 300.0)),
         lambda f, out, s: verify_shards(s), "shard-boxes")
    for label, change in (("frames float32", replace_dataset("frames", dtype=np.float32)),
                          ("frames 112 px", lambda h5: replace_dataset("frames", shape=(h5["frames"].shape[0], 5, 112,
                                                                                        112, 3))(h5)),
                          ("masks renamed", lambda h5: h5.move("masks", "mask"))):
        case(f"train/inspect: shard with {label}", shards_copy(change),
             lambda f, out, s: ShardSet(s, "train", verify=True)[0])
        case(f"inspect (no verify): shard with {label}", shards_copy(change), lambda f, out, s: ShardSet(s)[0])

    # --- propose: a mask of another size than its frame
    def half_mask(f):
        shutil.copytree(root, f / "root")
        layout = AVSBenchLayout.from_root(f / "root")
        clip = layout.clips(["train"])[0]
        w, h = Image.open(layout.frame_path(clip, 1)).size
        m = np.zeros((h // 2, w // 2), np.uint8)
        m[5:25, 10:30] = 255
        Image.fromarray(m).save(layout.mask_path(clip, 1))
        return f / "root"
    case("propose: mask half the size of its frame", half_mask,
         lambda f, out, r: run_propose(r, annotations=out, splits=["train"], quiet=True).get("findings", []),
         "propose-size-mismatch")

    # --- YAML and JSON caps
    deep_flow, deep_block = "names: " + "[" * 100_000 + "]" * 100_000, "names:\n" + "".join(
        " " * i + "- \n" for i in range(1200))
    alias = ("a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nnames: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n")
    for label, text in (("deep flow", deep_flow), ("deep block", deep_block), ("alias bomb", alias)):
        def with_yaml(f, text=text):
            shutil.copytree(root, f / "root")
            (f / "root" / "s4_data" / "visual_frames" / "data.yaml").write_text(text)
            return f / "root"
        case(f"import: YOLO data.yaml {label}", with_yaml,
             lambda f, out, r: run_import(r, (out.mkdir(), out / "b.csv")[1], quiet=True).get("findings", []),
             "yolo-class-file-bad")
    for label, name, text in (("deep YAML", "c.yaml", deep_flow), ("block YAML", "c.yaml", deep_block),
                              ("deep JSON", "c.json", DEEP_JSON)):
        def cfg_file(f, name=name, text=text):
            (f / name).write_text(text)
            return f / name
        case(f"train --config: {label}", cfg_file, lambda f, out, p: load_file(p))

    # --- images: the demo's raw videos
    try:
        import av  # noqa: F401
        from avsprep.demo.raw_videos import write_raw_videos
    except ImportError:
        write_raw_videos = None
    if write_raw_videos is not None:
        def bomb_frame(f):
            write_demo(f / "root", clips=3, seed=0, quiet=True)
            layout = AVSBenchLayout.from_root(f / "root")
            bomb_png(layout.frame_path(layout.clips()[0], 2))
            return f / "root"
        case("demo raw videos: a bomb frame", bomb_frame, lambda f, out, r: write_raw_videos(r, quiet=True))
    return {"cases": sum(counts.values()), **{k: counts.get(k, 0) for k in ("clean_error", "finding", "crash", "silent")},
            "failed": failed, "outcomes": outcomes}
# ----------------------------------------------------------------------------- file system and concurrency

def filesystem_faults(work: Path) -> dict:
    """Issue 23: every writing command on a disk that fills halfway through its output (a real tmpfs
    where root can mount, else skipped), into a read-only folder, two writers of one output started
    together, an output over the run's own input, an output file in a folder that does not exist.
    Each case is ``clean`` (one ``Error:`` line naming the reason, no temporary file or lock left, no
    partial output unless the command states its resume rule; or the expected success),
    ``traceback`` or ``silent``."""
    import torch

    from avsprep.demo import write_demo
    from avsprep.demo.raw_videos import write_raw_videos
    from avsprep.importer import run_import
    from avstrain.models import build_avs_model
    from avstrain.models.weights import ours_to_official
    from tests.helpers.faults import (
        can_mount, classify_failure, classify_pair, cli_argv, fill_to, fs_commands, read_only_dir, run_cli,
        small_tmpfs, with_out,
    )
    from tests.helpers.report import random_checkpoint

    counts = collections.Counter()
    failed = []

    def count(case: str, kind: str, res=None) -> None:
        counts[kind] += 1
        if kind != "clean":
            tail = (res.stderr.strip().splitlines() or [""])[-1][:300] if res is not None else ""
            failed.append({"case": case, "kind": kind, "stderr": tail})
        say(f"fs: {case}: {kind}")

    root = work / "fs-root"
    write_demo(root, clips=6, seed=0, quiet=True)
    write_raw_videos(root, quiet=True)
    table = work / "fs-boxes.csv"
    run_import(root, table, quiet=True)
    ckpt, shards = random_checkpoint(work)
    torch.manual_seed(0)
    official = work / "S4_official.pth"
    torch.save(ours_to_official(build_avs_model("resnet50").state_dict(), "resnet50"), official)
    inputs = {"root": root, "table": table, "shards": shards, "ckpt": ckpt, "official": official,
              "videos": root / "s4_data" / "raw_videos"}
    commands = fs_commands(inputs)
    space = ("No space left on device", "disk quota")
    denied = ("read-only", "permission denied")
    for name, (tool, argv, keeps) in commands.items():
        clean = work / "fs-clean" / name.replace(" ", "_")
        clean.mkdir(parents=True)  # OUT exists in every case (a missing folder is its own case below)
        res = run_cli(tool, *with_out(argv, clean))
        if res.returncode != 0:
            count(f"{name} (clean run)", "traceback" if "Traceback" in res.stderr else "silent", res)
            continue
        size = sum(p.stat().st_size for p in clean.rglob("*") if p.is_file())
        if can_mount():
            mnt = work / "fs-full" / name.replace(" ", "_")
            with small_tmpfs(mnt, f"{size * 2 // 1024 + 1024}k") as mounted:
                if mounted:
                    (mnt / "out").mkdir()
                    fill_to(mnt, size // 2)
                    res = run_cli(tool, *with_out(argv, mnt / "out"))
                    count(f"{name}: disk full halfway", classify_failure(res, mnt / "out", keeps, space), res)
        with read_only_dir(work / "fs-ro" / name.replace(" ", "_")) as how:
            if how:
                ro = work / "fs-ro" / name.replace(" ", "_")
                res = run_cli(tool, *with_out(argv, ro))
                count(f"{name}: read-only ({how})", classify_failure(res, ro, keeps, denied), res)
    # two writers of one output, started together
    same = work / "fs-two-builds"
    pair = [cli_argv("avsprep", "build", table, "--root", root, "-o", same, "-q", *extra)
            for extra in ([], ["--clips-per-shard", "1"])]
    from tests.helpers.faults import two_together

    count("two avsprep build into one -o", classify_pair(two_together(pair)))
    tool, argv, _ = commands["avstrain train"]
    run = work / "fs-two-trains"
    count("two avstrain train into one RUN",
          classify_pair(two_together([cli_argv(tool, *with_out(argv, run)).copy() for _ in range(2)])))
    # an output file in a folder that does not exist yet: made, or refused before the work
    for case, tool, argv, target in (
            ("evaluate --per-clip NEW/x.csv", "avstrain", ["evaluate", ckpt, shards, "--device", "cpu", "--per-clip"],
             work / "fs-new" / "a" / "x.csv"),
            ("inspect --png NEW/x.png", "avsprep", ["inspect", shards, "--png"], work / "fs-new" / "b" / "x.png")):
        res = run_cli(tool, *argv, target)
        count(case, "traceback" if "Traceback" in res.stderr else
              "clean" if (res.returncode == 0 and target.is_file()) or (res.returncode == 1 and not target.exists())
              else "silent", res)
    # outputs over the run's own inputs: refused, the input untouched
    before = ckpt.read_bytes()
    res = run_cli("avstrain", "evaluate", ckpt, shards, "--per-clip", ckpt, "--device", "cpu")
    count("evaluate --per-clip CHECKPOINT",
          "traceback" if "Traceback" in res.stderr else
          "clean" if res.returncode == 1 and ckpt.read_bytes() == before else "silent", res)
    manifest = (shards / "manifest.json").read_bytes()
    res = run_cli("avsprep", "inspect", shards, "--png", shards / "manifest.json")
    count("inspect --png SHARDS/manifest.json",
          "traceback" if "Traceback" in res.stderr else
          "clean" if res.returncode == 1 and (shards / "manifest.json").read_bytes() == manifest else "silent", res)
    (shards / "manifest.json").write_bytes(manifest)  # where it was overwritten, for any later case
    return {"cases": sum(counts.values()), "full_disk": "tmpfs" if can_mount() else "not run (no mount)",
            **{k: counts.get(k, 0) for k in ("clean", "traceback", "silent")}, "failed": failed}


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="XML parse cases (default 10000)")
    ap.add_argument("--start", type=int, default=0, help="first case number (cases are deterministic)")
    ap.add_argument("--trials", type=int, default=20, help="SIGKILL + resume trials (default 20)")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--clips-per-shard", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    ap.add_argument("--skip-build", action="store_true", help="parse fuzz only")
    ap.add_argument("--only-fs", action="store_true",
                    help="only the file-system and concurrency cases (issue 23)")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    report: dict = {"metric": "robustness", "unit": "count"}
    say("file system and concurrency (full disk, read-only, two writers, outputs over inputs)")
    with tempfile.TemporaryDirectory(prefix="avs-fs-") as tmp:
        report["filesystem"] = filesystem_faults(Path(tmp))
    if args.only_fs:
        fs = report["filesystem"]
        report["failures"] = fs["traceback"] + fs["silent"]
        print(json.dumps(report, sort_keys=False))
        return 1 if report["failures"] else 0
    say(f"parse fuzz: {args.cases} cases")
    report["parse"] = fuzz_parse(args.cases, args.start)
    say("hostile inputs (names as paths, image bombs, deep JSON)")
    with tempfile.TemporaryDirectory(prefix="avs-hostile-") as tmp:
        report["hostile"] = hostile_inputs(Path(tmp))
    say("weights, checkpoints, shards, propose sizes, YAML (issue 21)")
    with tempfile.TemporaryDirectory(prefix="avs-weights-") as tmp:
        report["weights_and_shards"] = weights_and_shards(Path(tmp))
    if not args.skip_build:
        with tempfile.TemporaryDirectory(prefix="avs-robust-") as tmp:
            work = Path(tmp)
            say(f"build faults: {args.trials} kill trials")
            report["kill"] = build_faults(work, args.clips, args.clips_per_shard, args.trials, args.seed)
            say("disk full")
            try:
                report["disk_full"] = disk_full(work)
            except Exception as exc:  # noqa: BLE001
                report["disk_full"] = {"ok": False, "failure": traceback.format_exception_only(exc)[-1][:300]}
            say("bad input files")
            report["bad_input"] = bad_inputs(work)
    say("stale inputs and task mismatches")
    with tempfile.TemporaryDirectory(prefix="avs-stale-") as tmp:
        report["stale_and_mismatch"] = stale_and_mismatch(Path(tmp))
    p = report["parse"]
    k = report.get("kill", {})
    failures = (p["unhandled_exceptions"] + p["hangs"] + p["invariant_violations"]
                + k.get("finished_looking_problems", 0) + k.get("resume_failures", 0)
                + k.get("byte_mismatches", 0) + (k.get("clean_builds_identical") is False)
                + (report.get("disk_full", {}).get("ok") is False)
                + len(report.get("bad_input", {}).get("failed", []))
                + len(report["hostile"]["failed"]) + len(report["stale_and_mismatch"]["failed"])
                + len(report["weights_and_shards"]["failed"])
                + report["filesystem"]["traceback"] + report["filesystem"]["silent"])
    report["files_lost"] = k.get("files_lost", 0)
    report["failures"] = failures
    report["seconds"] = round(time.monotonic() - t0, 1)
    if k:
        k.pop("details") if not (k["finished_looking_problems"] or k["byte_mismatches"]) else None
    print(json.dumps(report, sort_keys=False))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
