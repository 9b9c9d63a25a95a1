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

def hostile_inputs(work: Path) -> dict:
    """Names that would become paths outside the output folder, decompression bombs, deep JSON: each case
    must end as a clean one-line error or a finding, with nothing written outside its output folder and
    its input files unchanged. Counts per class: clean_error / finding / crash / silent."""
    import torch

    from avsprep.annotations.createml import parse_createml
    from avsprep.annotations.propose import ProposalWriter
    from avsprep.common.errors import AvsError
    from avsprep.common.images import image_size, open_image
    from avsprep.datasets.avss import read_avss_metadata
    from avsprep.demo.avsbench import write_avsbench_demo
    from avstrain.mask_files import MaskSink, write_binary_masks
    from tests.helpers.hostile import DEEP_JSON, HOSTILE, bomb_jpeg, bomb_png, s4_csv, tree

    counts = collections.Counter()
    failed = []

    def case(name: str, folder: Path, setup, run, expect_finding: Optional[str] = None) -> None:
        """``setup(folder)`` writes the inputs, ``run(folder, out, inputs)`` is the command under test."""
        folder.mkdir(parents=True)
        out_dir = folder / "out"
        inputs = setup(folder)
        before = tree(folder)
        try:
            res = run(folder, out_dir, inputs)
            kind = "finding" if expect_finding and expect_finding in {f.code for f in res} else "silent"
        except AvsError as exc:
            kind = "clean_error" if "\n" not in str(exc) else "silent"
        except Exception as exc:  # noqa: BLE001
            kind = "crash"
            failed.append({"case": name, "why": traceback.format_exception_only(exc)[-1][:200]})
        outside = {k: v for k, v in tree(folder).items() if not k.startswith("out/")}
        if kind != "crash" and outside != before:
            kind = "silent"  # wrote outside out/ or changed an input
        counts[kind] += 1
        if kind == "silent":
            failed.append({"case": name, "why": "no error, or a file written outside the output / an input changed"})

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
    p = report["parse"]
    k = report.get("kill", {})
    failures = (p["unhandled_exceptions"] + p["hangs"] + p["invariant_violations"]
                + k.get("finished_looking_problems", 0) + k.get("resume_failures", 0)
                + k.get("byte_mismatches", 0) + (k.get("clean_builds_identical") is False)
                + (report.get("disk_full", {}).get("ok") is False)
                + len(report.get("bad_input", {}).get("failed", []))
                + len(report["hostile"]["failed"])
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
