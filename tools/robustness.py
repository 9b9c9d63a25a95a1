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
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    report: dict = {"metric": "robustness", "unit": "count"}
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
                + len(report["hostile"]["failed"]) + len(report["stale_and_mismatch"]["failed"]))
    report["files_lost"] = k.get("files_lost", 0)
    report["failures"] = failures
    report["seconds"] = round(time.monotonic() - t0, 1)
    if k:
        k.pop("details") if not (k["finished_looking_problems"] or k["byte_mismatches"]) else None
    print(json.dumps(report, sort_keys=False))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
