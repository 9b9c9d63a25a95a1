"""``avsprep extract``: real videos -> the AVSBench release layout, as the official
preprocessing scripts make it (frames: :mod:`avsprep.extract.frames`; wav:
:mod:`avsprep.extract.audio`).

Sources: the official ``raw_videos/`` tree with its metadata CSV (S4:
``raw_videos/{split}/{category}/{name}.mp4``, MS3: ``raw_videos/{name}.mp4``), or any video
files / folders of them (``--split`` and ``--category`` say where they go). Output paths come
from :class:`avsprep.datasets.avsbench.AVSBenchLayout`; the metadata CSV is written or extended.

Each clip is decoded and checked in memory first; a video that cannot be decoded, has no audio,
is too short or is silent becomes a finding and writes nothing. A clip is written as a frame
folder renamed into place, then its wav written atomically: the wav is the commit mark, so a
rerun skips clips whose 5 frames and wav exist and redoes any other.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from avsprep.common import atomic
from avsprep.common.errors import DataError
from avsprep.common.findings import CODES, Finding, exit_code
from avsprep.datasets.steps import AVSS_REAL_STEPS

log = logging.getLogger("avsprep")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".3gp")
SETTINGS = ("s4", "ms3", "avss")
CLIP_SECONDS = 5
# AVSS (no official script; reference/avss.md 1.3): 5-s clips for v1s/v1m, 10-s for v2; frames
# JPEG at the source resolution (one per second, same index rule), audio.wav 48 kHz stereo 16-bit.
AVSS_SECONDS = AVSS_REAL_STEPS  # one frame per second: v1s/v1m 5, v2 10
AVSS_AUDIO_RATE = 48000
AVSS_JPEG_QUALITY = 95
# A video may end this much before the clip does (ffmpeg durations are in centiseconds and the
# last frame is repeated by the official rule), more is "too short".
SHORT_TOLERANCE_S = 0.1


@dataclass(frozen=True)
class Job:
    """One clip to extract: the video, where it goes, and its metadata row."""

    video: str
    name: str
    split: str
    category: Optional[str] = None
    start: int = 0
    window: Optional[int] = None  # --windows: the clip's first second in the video
    subset: Optional[str] = None  # AVSS: v1s / v1m / v2 (``category`` then holds a_obj)

    @property
    def seconds(self) -> int:
        """Official clip length: S4 ``5 if start <= 5 else 10 - start`` (MS3 start is 0); AVSS 5
        (v1s, v1m) or 10 (v2)."""
        if self.subset is not None:
            return AVSS_SECONDS[self.subset]
        return CLIP_SECONDS if self.start <= 5 else 10 - self.start


def finding(code: str, message: str, file=None, clip=None) -> Finding:
    return Finding(code, CODES[code][0], message, str(file) if file else None, clip)


# --------------------------------------------------------------------------- sources

def _videos_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS
                  and not p.name.startswith("."))


def _meta_file(setting: str) -> str:
    from avsprep.datasets.avsbench import META_FILES

    return META_FILES[setting]


def find_csv(sources: list[Path], setting: str) -> Optional[Path]:
    """The official metadata CSV: in SRC, or two folders up from ``raw_videos`` (the release
    root holding ``s4_meta_data.csv`` and ``s4_data/raw_videos``)."""
    if len(sources) != 1 or not sources[0].is_dir():
        return None
    src = sources[0].resolve()
    for folder in (src, src.parent, src.parent.parent):
        if (folder / _meta_file(setting)).is_file():
            return folder / _meta_file(setting)
    return None


def jobs_from_csv(csv: Path, sources: list[Path], setting: str) -> tuple[list[Job], list[Finding]]:
    """One job per metadata row whose video is found under SRC (any extension)."""
    from avsprep.datasets.avsbench import META_COLUMNS, read_metadata

    df = read_metadata(csv, setting)
    by_stem: dict[str, Path] = {}
    for src in sources:
        for p in _videos_in(src):
            by_stem.setdefault(p.stem, p)
    id_col = META_COLUMNS[setting][0]
    jobs, findings = [], []
    for i, row in df.iterrows():
        name = row[id_col]
        video = by_stem.get(name)
        if video is None:
            findings.append(finding("video-missing", f"no video named {name}.* under "
                                    f"{', '.join(map(str, sources))}; add it or remove the row",
                                    csv, name))
            continue
        start = 0
        if setting == "s4":
            try:
                start = int(float(row["start"] or 0))
            except ValueError:
                raise DataError(f"{csv} line {i + 2}: start {row['start']!r} is not a number of "
                                "seconds; fix the row") from None
        jobs.append(Job(str(video), name, row["split"], row.get("category") if setting == "s4" else None,
                        start))
    return jobs, findings


def video_windows(path: Path, length: int = CLIP_SECONDS) -> list[int]:
    """``--windows``: first seconds of the consecutive full 5-s windows of a video (none when it
    cannot be opened or is shorter than 5 s: it then becomes one clip and its finding)."""
    import av

    from avsprep.extract.audio import moviepy_duration

    try:
        with av.open(str(path)) as c:
            dur = c.duration
    except (av.error.FFmpegError, OSError, ValueError):
        return []
    if dur is None:
        return []
    return list(range(0, int(moviepy_duration(dur) // length) * length, length))


def window_name(stem: str, start: int, length: int = CLIP_SECONDS) -> str:
    """AVSBench-style uid of a window: ``{stem}_{start_ms}_{end_ms}``."""
    return f"{stem}_{start * 1000}_{(start + length) * 1000}"


def jobs_from_files(sources: list[Path], setting: str, split: Optional[str],
                    category: Optional[str], windows: bool = False,
                    subset: Optional[str] = None) -> list[Job]:
    if setting == "avss" and subset not in AVSS_SECONDS:
        raise DataError("AVSS videos need --label v1s|v1m|v2 (the subset: 5-s single-source, 5-s "
                        "multi-source, 10-s clips)")
    if setting == "avss" and not category:
        raise DataError("AVSS videos need --category: the sounding classes joined by '_' (a_obj, e.g. "
                        "--category dog or --category woman_piano)")
    if setting == "s4" and not category:
        raise DataError("S4 videos without a metadata CSV need --category (e.g. --category "
                        "dog_barking) or --csv listing name,start,category,split")
    if not split:
        raise DataError("videos without a metadata CSV need --split train|val|test (or --csv)")
    jobs, seen = [], {}
    for src in sources:
        vids = _videos_in(src)
        if not vids:
            raise DataError(f"{src}: no video file ({', '.join(VIDEO_EXTS)}); pass videos or "
                            "a folder holding them")
        for p in vids:
            if p.stem in seen:
                raise DataError(f"{p}: clip name {p.stem!r} also used by {seen[p.stem]}; "
                                "rename one of the videos")
            seen[p.stem] = p
            cat = category if setting in ("s4", "avss") else None
            sub = subset if setting == "avss" else None
            length = AVSS_SECONDS[sub] if sub else CLIP_SECONDS
            starts = video_windows(p, length) if windows else []
            if not starts:
                jobs.append(Job(str(p), p.stem, split, cat, 0, None, sub))
            for w in starts:
                jobs.append(Job(str(p), window_name(p.stem, w, length), split, cat, 0, w, sub))
    return jobs


# --------------------------------------------------------------------------- one clip

def clip_paths(root: Path, setting: str, job: Job) -> tuple[list[Path], Path]:
    """The clip's frame files (second order) and wav, from the datasets layouts."""
    if setting == "avss":
        from avsprep.datasets.avss import AVSSClip, AVSSLayout, parse_a_obj

        layout = AVSSLayout(root)
        clip = AVSSClip(job.name, job.split, job.subset, parse_a_obj(job.category or ""))
        return [layout.frame_path(clip, i) for i in range(job.seconds)], layout.wav_path(clip)
    from avsprep.datasets.avsbench import AVSBenchLayout, Clip

    layout = AVSBenchLayout(root, setting)
    clip = Clip(job.name, job.split, job.category, job.start)
    return [layout.frame_path(clip, k) for k in range(1, job.seconds + 1)], layout.wav_path(clip)


def is_done(root: Path, setting: str, job: Job) -> bool:
    frames, wav = clip_paths(root, setting, job)
    return wav.is_file() and all(p.is_file() for p in frames)


def _bad(jobs, code, message):
    return [(job, None, None, [finding(code, message, job.video, job.name)]) for job in jobs]


def render_video(jobs: list, audio_resample: bool = False) -> list:
    """Decode one video once and check its clips in memory (one clip, or its ``--windows``):
    ``[(job, pngs, wav_bytes, findings)]``; nothing is written."""
    import av
    import cv2

    from avsprep.extract import audio as A
    from avsprep.extract.frames import decode, resize

    first = jobs[0]
    avss = first.subset is not None
    windowed = first.window is not None
    starts = [j.window for j in jobs] if windowed else [0]
    rate = AVSS_AUDIO_RATE if avss else (None if audio_resample else A.DECODE_RATE)
    try:
        d = decode(first.video, first.seconds, audio_rate=rate, starts=starts)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _bad(jobs, "video-undecodable", f"cannot decode ({reason}); re-download or re-encode "
                    "the video (ffmpeg -i in.x out.mp4)")
    if not d.has_audio:
        return _bad(jobs, "video-no-audio", "has no audio track; AVSBench clips need their sound: use "
                    "the original upload with audio")
    duration = A.moviepy_duration(d.duration_us)
    if not windowed and duration < first.seconds - SHORT_TOLERANCE_S:
        return _bad(jobs, "video-too-short", f"lasts {duration:.2f} s but the clip needs {first.seconds} s; "
                    "use a longer video (or the S4 start column)")
    out = []
    per = len(d.frames) // len(starts)
    for n, job in enumerate(jobs):
        if windowed:  # the window as if cut from the decoded stream at its first sample
            audio = d.audio[int(round(d.audio_rate * job.window)):]
            clip_duration = float(job.seconds)
        else:
            audio, clip_duration = d.audio, duration
        try:
            if avss:  # the clip's seconds at 48 kHz stereo (libswresample, like ffmpeg -ar 48000 -ac 2)
                samples = np.zeros((job.seconds * AVSS_AUDIO_RATE, 2), np.int16)
                take = audio[:len(samples)]
                samples[:len(take)] = take
            elif audio_resample:
                samples = A.resampled_wav(audio, d.audio_rate, clip_duration)
            else:
                samples = A.moviepy_wav(audio, clip_duration)
        except ValueError as exc:
            out.append((job, None, None, [finding("video-undecodable", f"audio stream unusable ({exc}); "
                                                  "re-encode the video", job.video, job.name)]))
            continue
        if not np.any(samples):
            out.append((job, None, None, [finding("audio-silent", "the audio track is all silence; "
                                                  "AVSBench clips need audible sound: use another video",
                                                  job.video, job.name)]))
            continue
        notes = []
        if d.variable_rate:
            notes.append(finding("video-variable-rate", "variable frame rate: the official reader (ffmpeg "
                                 "to image2pipe) duplicates/drops frames to a constant rate, we index the "
                                 "frames as decoded, so frames may differ from the official ones; "
                                 "re-encode at a constant rate (ffmpeg -i in -r 25 out.mp4) to match",
                                 job.video, job.name))
        pngs = []
        for rgb in d.frames[n * per:(n + 1) * per]:
            if avss:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, AVSS_JPEG_QUALITY])
            else:
                ok, buf = cv2.imencode(".png", cv2.cvtColor(resize(rgb), cv2.COLOR_RGB2BGR))
            pngs.append(buf.tobytes())
        out.append((job, pngs, A.wav_bytes(samples, AVSS_AUDIO_RATE if avss else A.OUT_RATE), notes))
    return out


def render_clip(job: Job, audio_resample: bool = False):
    """One clip: ``(pngs, wav_bytes, findings)``; nothing is written."""
    _, pngs, wav, findings = render_video([job], audio_resample)[0]
    return pngs, wav, findings


def write_clip(root: Path, setting: str, job: Job, pngs: list[bytes], wav: bytes) -> None:
    """Frame folder written under a temporary name and renamed into place, then the wav (the
    commit mark) written atomically."""
    frames, wav_path = clip_paths(root, setting, job)
    folder = frames[0].parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        for path, data in zip(frames, pngs):
            (tmp / path.name).write_bytes(data)
        if wav_path.exists():
            wav_path.unlink()  # the clip is not finished until the new wav lands
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        atomic.fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(wav_path, wav)


def _work(args):
    """One video (one clip or its windows): ``[(name, findings)]`` in job order."""
    root, setting, jobs, audio_resample = args
    done = []
    for job, pngs, wav, findings in render_video(jobs, audio_resample):
        if pngs is not None:
            write_clip(Path(root), setting, job, pngs, wav)
        done.append((job.name, findings))
    return done


# --------------------------------------------------------------------------- metadata

def merge_rows(old, new, key: str):
    """Extend a metadata table: a clip already listed keeps its row and place (its columns of
    ``new`` updated, other columns kept), new clips are appended in order. The row order is the
    order the official test loop iterates, so it never changes."""
    import pandas as pd

    old = old.copy()
    where = {k: i for i, k in enumerate(old[key])}
    extra = []
    for _, row in new.iterrows():
        i = where.get(row[key])
        if i is None:
            extra.append(row)
        else:
            for col in new.columns:
                old.iloc[i, old.columns.get_loc(col)] = row[col]
    if extra:
        old = pd.concat([old, pd.DataFrame(extra, columns=new.columns)], ignore_index=True)
    return old.fillna("")


def write_avss_metadata(root: Path, jobs: Iterable[Job]) -> Path:
    """AVSS: ``metadata.csv`` (vid,uid,s_min,s_sec,a_obj,split,label) written or extended, and
    ``label2idx.json`` (the 71 classes) when absent."""
    import json

    import pandas as pd

    from avsprep.datasets.avss import LABEL_FILE, META_FILE, read_avss_metadata
    from avsprep.datasets.avss_classes import AVSS_CLASSES

    cols = ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
    rows = []
    for j in jobs:
        start = j.window or 0
        rows.append({"vid": Path(j.video).stem, "uid": j.name, "s_min": str(start // 60),
                     "s_sec": str(start % 60), "a_obj": j.category, "split": j.split, "label": j.subset})
    new = pd.DataFrame(rows, columns=cols, dtype=str)
    path = root / META_FILE
    if path.is_file():
        new = merge_rows(read_avss_metadata(path), new, "uid")
    atomic.write_text(path, new.to_csv(index=False))
    if not (root / LABEL_FILE).is_file():
        atomic.write_text(root / LABEL_FILE, json.dumps({c: i for i, c in enumerate(AVSS_CLASSES)}, indent=1))
    return path


def write_metadata(root: Path, setting: str, jobs: Iterable[Job]) -> Path:
    """Write or extend ROOT's metadata CSV with the finished clips (existing rows kept, a row of
    the same clip replaced)."""
    import pandas as pd

    if setting == "avss":
        return write_avss_metadata(root, jobs)

    from avsprep.datasets.avsbench import META_COLUMNS, read_metadata

    path = root / _meta_file(setting)
    cols = META_COLUMNS[setting]
    rows = [{"name": j.name, "start": str(j.start), "category": j.category, "split": j.split}
            if setting == "s4" else {"video_id": j.name, "split": j.split} for j in jobs]
    new = pd.DataFrame(rows, columns=cols, dtype=str)
    if path.is_file():
        new = merge_rows(read_metadata(path, setting), new, cols[0])
    atomic.write_text(path, new.to_csv(index=False))
    return path


# --------------------------------------------------------------------------- run

def run_extract(sources: list, out, setting: str = "s4", split: Optional[str] = None,
                category: Optional[str] = None, csv: Optional[Path] = None, workers: int = 1,
                overwrite: bool = False, audio_resample: bool = False, quiet: bool = False,
                windows: bool = False, subset: Optional[str] = None) -> dict:
    from avsprep.common.clikit import progress
    from avsprep.datasets.base import SPLITS

    if setting not in SETTINGS:
        raise DataError(f"unknown setting {setting!r}; use s4, ms3 or avss")
    if split is not None and split not in SPLITS:
        raise DataError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    sources = [Path(s) for s in sources]
    for s in sources:
        if not s.exists():
            raise DataError(f"{s} does not exist; pass video files or a folder of them")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    csv = Path(csv) if csv else (find_csv(sources, setting) if setting != "avss" else None)
    if csv is not None and setting == "avss":
        raise DataError("AVSS has no official raw-video tree to read a CSV from; pass the videos with "
                        "--label and --category")
    if csv is not None:
        if windows:
            raise DataError("--windows cuts videos not listed in a metadata CSV; drop --csv (or --windows)")
        jobs, findings = jobs_from_csv(csv, sources, setting)
    else:
        jobs, findings = jobs_from_files(sources, setting, split, category, windows, subset), []
    todo = [j for j in jobs if overwrite or not is_done(root, setting, j)]
    skipped = len(jobs) - len(todo)
    todo_names = {j.name for j in todo}
    done_names: set = {j.name for j in jobs if j.name not in todo_names}
    by_video: dict[str, list[Job]] = {}
    for j in todo:
        by_video.setdefault(j.video, []).append(j)
    args = [(str(root), setting, js, audio_resample) for js in by_video.values()]
    bar = progress(total=len(todo), quiet=quiet, desc="extract", unit="clip")

    def collect(results):
        for name, fs in results:
            findings.extend(fs)
            if not any(f.severity == "error" for f in fs):
                done_names.add(name)
            bar.update()

    try:
        if workers > 1 and len(args) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for results in pool.map(_work, args):
                    collect(results)
        else:
            for a in args:
                collect(_work(a))
    finally:
        bar.close()
    finished = [j for j in jobs if j.name in done_names]
    meta = write_metadata(root, setting, finished) if finished else None
    written = len(finished) - skipped
    errors = sum(1 for f in findings if f.severity == "error")
    text = (f"{written} clip(s) extracted, {skipped} already done, {errors} with problems "
            f"-> {root} ({setting})")
    return {
        "root": str(root), "setting": setting, "clips": len(jobs), "written": written,
        "skipped": skipped, "failed": errors, "metadata": str(meta) if meta else None,
        "audio": "resampled" if audio_resample else "moviepy-1.x",
        "findings": [f.to_dict() for f in findings], "text": text,
        "exit_code": exit_code(findings),
        "_findings": findings,
    }
