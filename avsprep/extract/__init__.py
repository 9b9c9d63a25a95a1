"""``avsprep extract``: real videos -> the AVSBench release layout, as the official
preprocessing scripts make it (frames: :mod:`avsprep.extract.frames`; wav:
:mod:`avsprep.extract.audio`).

Sources: the official ``raw_videos/`` tree with its metadata CSV (S4:
``raw_videos/{split}/{category}/{name}.mp4``, MS3: ``raw_videos/{name}.mp4``), or any video
files / folders of them (``--split`` and ``--category`` say where they go; AVSS also ``--label``).
Everything that differs between releases (paths, clip length, frame format and size, audio rate,
metadata row and header, required options) comes from the setting's
:class:`avsprep.datasets.base.Layout` (:func:`avsprep.datasets.new_layout`); this package never
tests the setting. The metadata CSV is written or extended.

Each clip is decoded and checked in memory first; a video that cannot be decoded, has no audio,
is too short or is silent becomes a finding and writes nothing. A clip is written as a frame
folder renamed into place, then its wav written atomically: the wav is the commit mark, so a
rerun skips clips whose 5 frames and wav exist and redoes any other.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

# av and cv2 are imported here, not lazily: this package is only imported by the ``extract`` command
# (avsprep.cli imports it inside the command), which always decodes and encodes; ``import avsprep.cli``
# stays free of them (measured with python -X importtime: cv2 ~100 ms, pandas ~200 ms, never loaded).
import av
import cv2
import numpy as np
import pandas as pd

from avsprep.common import atomic
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.common.findings import CODES, Finding, exit_code
from avsprep.datasets import new_layout
from avsprep.datasets.base import SPLITS, Clip, Layout
from avsprep.extract import audio as A
from avsprep.extract.frames import decode, resize

log = logging.getLogger("avsprep")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".3gp")
SETTINGS = ("s4", "ms3", "avss")
CLIP_SECONDS = 5  # --windows without a clip length (the S4/MS3 clip)
# A video may end this much before the clip does (ffmpeg durations are in centiseconds and the
# last frame is repeated by the official rule), more is "too short".
SHORT_TOLERANCE_S = 0.1
# what a failed run keeps, stated in its error (each clip lands whole or not at all)
RESUME_RULE = "rerun the same command (finished clips are kept and skipped)"


@dataclass(frozen=True)
class Job:
    """One clip to extract: the video and what places it; the layout makes the clip of it
    (:meth:`clip`: where it goes, how long it lasts, its metadata row)."""

    video: str
    name: str
    split: str
    category: Optional[str] = None  # --category as given (S4 category, AVSS a_obj text)
    start: int = 0
    window: Optional[int] = None  # --windows: the clip's first second in the video
    subset: Optional[str] = None  # --label (AVSS: v1s / v1m / v2)
    row: Optional[Clip] = None  # the clip of its metadata-CSV row, when it has one

    def clip(self, layout: Layout) -> Clip:
        """The layout's clip of this job (its metadata row's, or one made from the options)."""
        if self.row is not None:
            return self.row
        return layout.video_clip(self.name, self.split, self.category, self.start, self.subset)


def finding(code: str, message: str, file=None, clip=None) -> Finding:
    return Finding(code, CODES[code][0], message, str(file) if file else None, clip)


# --------------------------------------------------------------------------- sources

def _videos_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS
                  and not p.name.startswith("."))


def find_csv(sources: list[Path], layout: Layout) -> Optional[Path]:
    """The official metadata CSV: in SRC, or two folders up from ``raw_videos`` (the release
    root holding ``s4_meta_data.csv`` and ``s4_data/raw_videos``); None for a layout without one."""
    meta = layout.raw_meta_file
    if meta is None or len(sources) != 1 or not sources[0].is_dir():
        return None
    src = sources[0].resolve()
    for folder in (src, src.parent, src.parent.parent):
        if (folder / meta).is_file():
            return folder / meta
    return None


def jobs_from_csv(csv: Path, sources: list[Path], layout: Layout) -> tuple[list[Job], list[Finding]]:
    """One job per metadata row whose video is found under SRC (any extension)."""
    df = layout.read_meta(csv)
    by_stem: dict[str, Path] = {}
    for src in sources:
        for p in _videos_in(src):
            by_stem.setdefault(p.stem, p)
    jobs, findings = [], []
    for i, row in df.iterrows():
        name = row[layout.meta_key]
        video = by_stem.get(name)
        if video is None:
            findings.append(finding("video-missing", f"no video named {name}.* under "
                                    f"{', '.join(map(str, sources))}; add it or remove the row",
                                    csv, name))
            continue
        clip = layout.row_clip(row, f"{csv} line {i + 2}")
        jobs.append(Job(str(video), clip.name, clip.split, row=clip))
    return jobs, findings


def video_windows(path: Path, length: int = CLIP_SECONDS) -> list[int]:
    """``--windows``: first seconds of the consecutive full 5-s windows of a video (none when it
    cannot be opened or is shorter than 5 s: it then becomes one clip and its finding)."""
    try:
        with av.open(str(path)) as c:
            dur = c.duration
    except (av.error.FFmpegError, OSError, ValueError):
        return []
    if dur is None:
        return []
    return list(range(0, int(A.moviepy_duration(dur) // length) * length, length))


def window_name(stem: str, start: int, length: int = CLIP_SECONDS) -> str:
    """AVSBench-style uid of a window: ``{stem}_{start_ms}_{end_ms}``."""
    return f"{stem}_{start * 1000}_{(start + length) * 1000}"


def jobs_from_files(sources: list[Path], layout: Layout, split: Optional[str],
                    category: Optional[str], windows: bool = False,
                    subset: Optional[str] = None) -> list[Job]:
    problem = layout.missing_option(category, subset)
    if problem:
        raise DataError(problem)
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
            length = layout.clip_seconds(layout.video_clip(p.stem, split, category, 0, subset))
            starts = video_windows(p, length) if windows else []
            if not starts:
                jobs.append(Job(str(p), p.stem, split, category, 0, None, subset))
            for w in starts:
                jobs.append(Job(str(p), window_name(p.stem, w, length), split, category, 0, w, subset))
    return jobs


# --------------------------------------------------------------------------- one clip

def clip_paths(layout: Layout, job: Job) -> tuple[list[Path], Path]:
    """The clip's frame files (second order) and wav, from the datasets layouts."""
    clip = job.clip(layout)
    return layout.extract_frame_paths(clip), layout.wav_path(clip)


def is_done(layout: Layout, job: Job) -> bool:
    frames, wav = clip_paths(layout, job)
    return wav.is_file() and all(p.is_file() for p in frames)


def _bad(jobs, code, message):
    return [(job, None, None, [finding(code, message, job.video, job.name)]) for job in jobs]


def render_video(jobs: list, audio_resample: bool = False, setting: str = "s4") -> list:
    """Decode one video once and check its clips in memory (one clip, or its ``--windows``):
    ``[(job, pngs, wav_bytes, findings)]``; nothing is written. Formats, sizes and rates come
    from the ``setting``'s layout."""
    layout = new_layout(".", setting)
    first = jobs[0]
    seconds = layout.clip_seconds(first.clip(layout))
    kept_rate = layout.audio_rate  # the wav is the decoded stream at this rate (else moviepy's 16 kHz)
    windowed = first.window is not None
    starts = [j.window for j in jobs] if windowed else [0]
    rate = wav_rate(layout, audio_resample)
    try:
        d = decode(first.video, seconds, audio_rate=rate, starts=starts)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _bad(jobs, "video-undecodable", f"cannot decode ({reason}); re-download or re-encode "
                    "the video (ffmpeg -i in.x out.mp4)")
    if not d.has_audio:
        return _bad(jobs, "video-no-audio", "has no audio track; AVSBench clips need their sound: use "
                    "the original upload with audio")
    duration = A.moviepy_duration(d.duration_us)
    if not windowed and duration < seconds - SHORT_TOLERANCE_S:
        return _bad(jobs, "video-too-short", f"lasts {duration:.2f} s but the clip needs {seconds} s; "
                    "use a longer video (or the S4 start column)")
    out = []
    per = len(d.frames) // len(starts)
    for n, job in enumerate(jobs):
        if windowed:  # the window as if cut from the decoded stream at its first sample
            audio = d.audio[int(round(d.audio_rate * job.window)):]
            clip_duration = float(seconds)
        else:
            audio, clip_duration = d.audio, duration
        try:
            samples = clip_samples(layout, audio, d.audio_rate, clip_duration, seconds, audio_resample)
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
            pngs.append(encode_frame(layout, rgb))
        out.append((job, pngs, A.wav_bytes(samples, kept_rate or A.OUT_RATE), notes))
    return out


def wav_rate(layout: Layout, audio_resample: bool = False) -> Optional[int]:
    """The rate the decoded stream is resampled to for ``layout``'s wav: the layout's own rate
    (AVSS 48 kHz), else 44.1 kHz for moviepy's pick (None: the source rate, ``--audio-resample``)."""
    return layout.audio_rate or (None if audio_resample else A.DECODE_RATE)


def clip_samples(layout: Layout, audio: np.ndarray, rate: int, clip_duration: float, seconds: int,
                 audio_resample: bool = False) -> np.ndarray:
    """The int16 ``[n, 2]`` samples of a clip's wav from the decoded stream ``audio`` (stereo at
    ``rate``, starting at the clip's first sample), at ``layout.audio_rate or 16000``: the layout's
    rate cut or zero-padded to ``seconds`` (AVSS), else moviepy 1.x's 16 kHz pick (or
    ``--audio-resample``'s filter) over ``clip_duration`` seconds. ``ValueError`` when unusable."""
    kept_rate = layout.audio_rate
    if kept_rate:  # the clip's seconds at that rate, stereo (libswresample, like ffmpeg -ar R -ac 2)
        samples = np.zeros((seconds * kept_rate, 2), np.int16)
        take = audio[:len(samples)]
        samples[:len(take)] = take
        return samples
    if audio_resample:
        return A.resampled_wav(audio, rate, clip_duration)
    return A.moviepy_wav(audio, clip_duration)


def encode_frame(layout: Layout, rgb: np.ndarray) -> bytes:
    """An RGB frame as the layout stores it: PNG resized like the official scripts (S4/MS3), or
    JPEG at the source size (AVSS)."""
    if layout.frame_size is not None:
        rgb = resize(rgb, layout.frame_size)
    params = [] if layout.frame_quality is None else [cv2.IMWRITE_JPEG_QUALITY, layout.frame_quality]
    ok, buf = cv2.imencode("." + layout.frame_format, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return buf.tobytes()


def render_clip(job: Job, audio_resample: bool = False, setting: str = "s4"):
    """One clip: ``(pngs, wav_bytes, findings)``; nothing is written."""
    _, pngs, wav, findings = render_video([job], audio_resample, setting)[0]
    return pngs, wav, findings


def write_clip(layout: Layout, job: Job, pngs: list[bytes], wav: bytes) -> None:
    """Frame folder written under a temporary name and renamed into place, then the wav (the
    commit mark) written atomically."""
    frames, wav_path = clip_paths(layout, job)
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
    layout = new_layout(Path(root), setting)
    done = []
    for job, pngs, wav, findings in render_video(jobs, audio_resample, setting):
        if pngs is not None:
            write_clip(layout, job, pngs, wav)
        done.append((job.name, findings))
    return done


# --------------------------------------------------------------------------- metadata

def merge_rows(old, new, key: str):
    """Extend a metadata table: a clip already listed keeps its row and place (its columns of
    ``new`` updated, other columns kept), new clips are appended in order. The row order is the
    order the official test loop iterates, so it never changes."""
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


def write_metadata(layout: Layout, jobs: Iterable[Job]) -> Path:
    """Write or extend the root's metadata CSV with the finished clips (existing rows kept, a row
    of the same clip replaced), and the layout's seed files (AVSS ``label2idx.json``) when absent."""
    rows = [layout.metadata_row(j.clip(layout), j.video, j.window or 0, j.category) for j in jobs]
    new = pd.DataFrame(rows, columns=layout.meta_header, dtype=str)
    path = layout.meta_path
    if path.is_file():
        new = merge_rows(layout.read_meta(path), new, layout.meta_key)
    atomic.write_text(path, new.to_csv(index=False))
    for name, text in layout.seed_files().items():
        if not (layout.root / name).is_file():
            atomic.write_text(layout.root / name, text)
    return path


# --------------------------------------------------------------------------- run

def run_extract(sources: list, out, setting: str = "s4", split: Optional[str] = None,
                category: Optional[str] = None, csv: Optional[Path] = None, workers: int = 1,
                overwrite: bool = False, audio_resample: bool = False, quiet: bool = False,
                windows: bool = False, subset: Optional[str] = None) -> dict:
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
    layout = new_layout(root, setting)
    csv = Path(csv) if csv else find_csv(sources, layout)
    if csv is not None and layout.raw_meta_file is None:
        raise DataError("AVSS has no official raw-video tree to read a CSV from; pass the videos with "
                        "--label and --category")
    if csv is not None:
        if windows:
            raise DataError("--windows cuts videos not listed in a metadata CSV; drop --csv (or --windows)")
        jobs, findings = jobs_from_csv(csv, sources, layout)
    else:
        jobs, findings = jobs_from_files(sources, layout, split, category, windows, subset), []
    todo = [j for j in jobs if overwrite or not is_done(layout, j)]
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
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for results in pool.map(_work, args):
                    collect(results)
        else:
            for a in args:
                collect(_work(a))
    finally:
        bar.close()
    finished = [j for j in jobs if j.name in done_names]
    meta = write_metadata(layout, finished) if finished else None
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
