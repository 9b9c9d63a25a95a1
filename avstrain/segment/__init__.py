"""``avstrain segment``: a checkpoint run on your own videos; the sounding object masked in a
video out, with its sound.

Per video, two streaming passes over the file (constant memory, any length):

1. **infer**: ``avsprep.extract.frames.VideoStream`` decodes frames and audio (the decoder of
   ``avsprep extract``). Each 5-s window (:mod:`avstrain.segment.plan`) gets its audio as the model
   was trained on it (``avsprep.extract.clip_samples``: the moviepy-1.x 16 kHz wav for S4/MS3,
   the 48 kHz stream for AVSS; then the layout's ``wav_examples``: the official loader's
   log-mel examples, the last repeated when short) and its frames as ``extract`` + ``build``
   store them (224 px); the model runs on the official pass and the ``--fps N`` dense passes,
   batched; every frame's mask is written as a PNG at the video's size, the official frames'
   area and confidence are kept per second;
2. **render**: the video decoded again, each frame painted with its mask, encoded with its
   sound (H.264 + AAC, :mod:`avstrain.segment.video`); with ``--audio-ablation zero`` also the
   side-by-side (sound | zeroed sound).

Outputs: ``OUT/{video}.mp4``, ``OUT/{video}/masks/{frame:06d}.png``, ``OUT/{video}.json`` (the
commit mark, written last) and ``OUT/index.html`` (:mod:`avstrain.segment.page`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np
import torch
from PIL import Image

from avsprep.audio.frontend import MIN_SAMPLES, SAMPLE_RATE
from avsprep.common import atomic
from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.common.paths import inside
from avsprep.datasets import new_layout
from avsprep.datasets.avss_loader import apply_geometry
from avsprep.datasets.base import safe_name
from avsprep.extract import VIDEO_EXTS, clip_samples, wav_rate
from avsprep.extract.audio import moviepy_duration
from avsprep.extract.frames import VideoStream, resize, to_rgb
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.data import to_device
from avstrain.devices import eval_forward, pick_device
from avstrain.segment import plan as P
from avstrain.segment.masks import MASKS, area, iou
from avstrain.segment.page import render_page
from avstrain.segment.video import VideoWriter, even
from avstrain.tasks import TASKS

log = logging.getLogger("avstrain")

ABLATIONS = ("zero", "shuffle")
TAIL_SECONDS = MIN_SAMPLES / SAMPLE_RATE  # 0.975 s: the shortest audio giving one VGGish example
AUDIO_LOOKAHEAD_S = 10  # decoded audio kept past a window's start: its 5 s + moviepy's reader window


@dataclass
class SegmentOptions:
    fps: Optional[int] = None           # dense passes per second (None: the video's rate, at most 25)
    ablation: Optional[str] = None      # "zero" | "shuffle"
    allow_silent: bool = False          # a video without an audio track runs with zeroed audio
    batch_size: int = 8                 # passes per forward
    device: str = "auto"
    vggish_weights: Optional[Path] = None  # checkpoints trained on stored VGGish embeddings


# --------------------------------------------------------------------------- the model side

class Runner:
    """The checkpoint's model and how its inputs are made: frames (``model_frame``), audio
    (``examples``) and batched passes (``run``)."""

    def __init__(self, checkpoint: Path, opts: SegmentOptions):
        ckpt = load_checkpoint(checkpoint)
        self.model, self.cfg = system_from_checkpoint(ckpt, checkpoint)
        self.dev = pick_device(opts.device)
        self.model.to(self.dev).eval()
        self.task = TASKS[self.cfg.setting]
        self.layout = new_layout(".", self.cfg.setting)  # the rules the model's training data followed
        self.masks = MASKS[self.task.semantic]
        self.classes = list(ckpt.get("classes") or [])
        self.batch_size = opts.batch_size
        self.vggish = None
        if self.model.audio_encoder is None:  # trained on VGGish embeddings stored in the shards
            if opts.vggish_weights is None:
                raise DataError(f"checkpoint {checkpoint} was trained on VGGish embeddings stored in its shards; "
                                "give --vggish-weights FILE (the file the shards were built with)")
            from avsprep.audio import load_vggish  # lazy: VGGish only for such checkpoints

            self.vggish = load_vggish(opts.vggish_weights).to(self.dev).eval()

    def model_frame(self, rgb: np.ndarray) -> np.ndarray:
        """A decoded RGB frame -> the 224 x 224 frame the shards hold: ``extract``'s resize where
        the layout stores resized frames (S4/MS3), then ``build``'s geometry (val/test)."""
        if self.layout.frame_size is not None:
            rgb = resize(rgb, self.layout.frame_size)
        h, w = rgb.shape[:2]
        return np.asarray(apply_geometry(Image.fromarray(rgb), self.layout.geometry(w, h, "test"), nearest=False))

    def examples(self, audio: np.ndarray, rate: int, clip_duration: float, name: str) -> np.ndarray:
        """A window's decoded stream (from its first sample) -> its log-mel examples
        ``[steps, 96, 64]``, as ``extract`` writes the wav and ``build`` reads it."""
        try:
            samples = clip_samples(self.layout, audio, rate, clip_duration, P.WINDOW_SECONDS)
        except ValueError:  # the audio track ends before this window: silence
            samples = np.zeros((int(SAMPLE_RATE * clip_duration), 2), np.int16)
        out_rate = self.layout.audio_rate or SAMPLE_RATE
        return self.layout.wav_examples(samples.astype(np.float64) / 32768.0, out_rate, name)

    def silent_examples(self) -> np.ndarray:
        return np.zeros((self.task.steps, 96, 64), np.float32)

    def run(self, frames: np.ndarray, examples: list, zero_audio: bool) -> np.ndarray:
        """Passes ``frames [P, 5, S, S, 3]`` uint8 with ``examples[p] [steps, 96, 64]`` -> score
        maps ``[P, 5, ...]`` (``masks.scores``), ``batch_size`` passes per forward."""
        out = []
        steps, real = self.task.steps, P.WINDOW_SECONDS
        for s in range(0, len(frames), self.batch_size):
            f = torch.from_numpy(np.ascontiguousarray(frames[s:s + self.batch_size]))
            b = len(f)
            if steps > real:  # AVSS: a 5-s window is a v1 clip, padded to 10 steps (frame_valid 0)
                f = torch.cat([f, torch.zeros((b, steps - real) + tuple(f.shape[2:]), dtype=f.dtype)], dim=1)
            size = f.shape[2]
            logmel = torch.from_numpy(np.stack(examples[s:s + self.batch_size]))  # [B, steps, 96, 64]
            cpu = {"frames": f, "masks": torch.zeros((b, steps, size, size), dtype=torch.uint8),
                   "mask_valid": torch.zeros((b, steps), dtype=torch.bool),
                   "label": torch.zeros(b, dtype=torch.long), "audio_logmel": logmel,
                   "video": [""] * b, "index": list(range(b))}
            if steps > real:
                fv = torch.zeros((b, steps), dtype=torch.bool)
                fv[:, :real] = True
                cpu["frame_valid"] = fv
            if self.vggish is not None:
                with torch.no_grad():
                    emb = self.vggish(logmel.reshape(-1, 1, 96, 64).to(self.dev)).reshape(b, steps, -1)
                if steps > real:
                    emb[:, real:] = 0.0  # as build does for padded steps
                cpu["audio_vggish"] = emb.cpu()
            batch = to_device(cpu, self.dev, False, self.cfg.image_size)
            logits = eval_forward(self.model, batch, self.dev, self.cfg, zero_audio=zero_audio)["logits"]
            scores = self.masks.scores(logits)  # [B*steps, ...]
            out.append(scores.reshape((b, steps) + scores.shape[1:])[:, :real])
        return np.concatenate(out) if out else np.zeros((0,))


# --------------------------------------------------------------------------- pass 1: infer

class _Audio:
    """The decoded stream of one video kept from a sample on (chunks, trimmed as windows finish)."""

    def __init__(self):
        self.chunks: list = []  # (first sample, int16 [n, 2])
        self.total = 0

    def add(self, chunk: np.ndarray) -> None:
        if len(chunk):
            self.chunks.append((self.total, chunk))
            self.total += len(chunk)

    def since(self, start: int) -> np.ndarray:
        parts = [c[max(0, start - s):] for s, c in self.chunks if s + len(c) > start]
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.int16)

    def drop_before(self, start: int) -> None:
        self.chunks = [(s, c) for s, c in self.chunks if s + len(c) > start]


class _Infer:
    """Pass 1 over one video: windows processed as soon as their frames and audio are decoded."""

    def __init__(self, runner: Runner, stream: VideoStream, name: str, tmp: Path, opts: SegmentOptions):
        self.r, self.stream, self.name, self.opts = runner, stream, name, opts
        self.rate = Fraction(stream.rate)
        self.n = opts.fps or P.default_fps(self.rate)
        self.silent = not stream.has_audio
        self.audio = _Audio()
        self.frames: dict[int, np.ndarray] = {}  # model inputs by frame index
        self.count = 0
        self.last_av = None
        self.size = None  # (width, height) of the decoded RGB frames
        self.duration = moviepy_duration(stream.duration_us) if stream.duration_us else None
        self.dirs = {"real": tmp / "masks"}
        if opts.ablation == "zero":
            self.dirs["zero"] = tmp / "masks_zero"
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.seconds: list[dict] = []
        self.classes_seen: set = set()
        self.examples_cache: dict[int, np.ndarray] = {}
        self._plans: dict[int, tuple] = {}

    # ---- the plan of a window
    def passes(self, w: int) -> tuple:
        """``(official, dense passes, unique passes)`` of window ``w`` (unclamped indices)."""
        if w not in self._plans:
            official = P.official_pass(w, self.rate, self.stream.fps)
            dense = P.dense_passes(w, self.rate, self.n)
            unique = list(dict.fromkeys([official] + dense))
            self._plans[w] = (official, dense, unique)
            self._plans.pop(w - 3, None)
        return self._plans[w]

    def needed(self, i: int) -> bool:
        w = P.window_of(i, self.rate)
        return any(i in p for v in (w - 1, w, w + 1) if v >= 0 for p in self.passes(v)[2])

    # ---- audio
    def audio_start(self, w: int) -> tuple[int, float]:
        """``(first sample, clip duration)`` of window ``w``'s audio (``plan.audio_span``)."""
        start, length = P.audio_span(w, self.duration, TAIL_SECONDS)
        return int(round(self.stream.audio_rate * start)), length

    def window_examples(self, w: int) -> np.ndarray:
        if self.silent:
            return self.r.silent_examples()
        if w not in self.examples_cache:
            a0, length = self.audio_start(w)
            self.examples_cache[w] = self.r.examples(self.audio.since(a0), self.stream.audio_rate, length,
                                                     f"{self.name} window {w}")
        return self.examples_cache[w]

    def partner(self, w: int) -> int:
        """``--audio-ablation shuffle``: the window whose audio window ``w`` gets instead of its own."""
        return w - 1 if w >= 1 else 1

    def audio_ready(self, w: int) -> bool:
        if self.silent:
            return True
        ws = [w] + ([self.partner(w)] if self.opts.ablation == "shuffle" else [])
        return all(self.audio.total >= self.audio_start(v)[0] + AUDIO_LOOKAHEAD_S * self.stream.audio_rate
                   for v in ws)

    # ---- the loop
    def run(self, bar) -> None:
        w = 0
        for kind, item in self.stream:
            if kind == "audio":
                self.audio.add(item)
            else:
                if self.needed(self.count):
                    self.frames[self.count] = self.convert(item)
                self.last_av = item
                self.count += 1
            while self.ready(w):
                self.window(w, last=None)
                bar.update()
                w += 1
        if self.count == 0:
            raise DataError(f"{self.stream.path}: no video frame could be decoded; re-encode the video")
        if self.duration is None:
            self.duration = self.count / float(self.rate)
        total = P.window_count(self.count, self.rate)
        if self.opts.ablation == "shuffle" and total < 2 and not self.silent:
            raise DataError(f"{self.stream.path}: --audio-ablation shuffle gives each 5-s window the sound of "
                            "another window of the video, and this one has a single window; use zero")
        if self.count - 1 not in self.frames:
            self.frames[self.count - 1] = self.convert(self.last_av)
        while w < total:
            self.window(w, last=self.count - 1)
            bar.update()
            w += 1

    def convert(self, frame) -> np.ndarray:
        rgb = to_rgb(frame)
        if self.size is None:
            self.size = (rgb.shape[1], rgb.shape[0])
        return self.r.model_frame(rgb)

    def ready(self, w: int) -> bool:
        _, _, unique = self.passes(w)
        return self.count > max(max(p) for p in unique) and self.audio_ready(w)

    def window(self, w: int, last: Optional[int]) -> None:
        """Run window ``w``'s passes; write its frames' masks; keep its seconds' figures."""
        official, dense, unique = self.passes(w)
        end = self.count if last is not None else None
        shown = [i for i in P.window_frames(w, self.rate) if end is None or i < end]
        used = {official} | {dense[P.mask_source(i, self.rate, self.n)[1]] for i in shown}
        unique = [p for p in unique if p in used]  # a short last window runs only the passes it shows
        clamp = (lambda p: P.clamp(p, last)) if last is not None else (lambda p: p)
        frames = np.stack([np.stack([self.frames[i] for i in clamp(p)]) for p in unique])
        ex = self.window_examples(w)
        real = self.r.run(frames, [ex] * len(unique), zero_audio=self.silent)
        pos = {p: k for k, p in enumerate(unique)}
        ablated = None
        if self.opts.ablation == "zero":
            ablated = self.r.run(frames, [ex] * len(unique), zero_audio=True)
        elif self.opts.ablation == "shuffle":
            other = self.window_examples(self.partner(w))
            ablated = np.zeros_like(real)
            ablated[pos[official]] = self.r.run(frames[pos[official]:pos[official] + 1], [other],
                                                zero_audio=self.silent)[0]
        width, height = self.size
        for i in shown:
            _, k, l = P.mask_source(i, self.rate, self.n)
            p = pos[dense[k]]
            mask = self.r.masks.at_size(real[p, l], width, height)
            (self.dirs["real"] / f"{i:06d}.png").write_bytes(self.r.masks.png(mask))
            if "zero" in self.dirs:
                zmask = self.r.masks.at_size(ablated[p, l], width, height)
                (self.dirs["zero"] / f"{i:06d}.png").write_bytes(self.r.masks.png(zmask))
        o = pos[official]
        for l in range(P.WINDOW_SECONDS):
            second = P.WINDOW_SECONDS * w + l
            if second > 0 and second >= self.duration_estimate():
                break
            mask = self.r.masks.mask(real[o, l])
            self.classes_seen.update(int(c) for c in np.unique(mask))
            row = {"second": second, "frame": int(clamp(official)[l]), "area": area(mask),
                   "confidence": self.r.masks.confidence(real[o, l])}
            if ablated is not None:
                amask = self.r.masks.mask(ablated[o, l])
                row.update(area_ablated=area(amask), iou_ablated=iou(mask, amask))
            self.seconds.append(row)
        # forget what no later window reads
        keep_from = P.window_frames(w + 1, self.rate).start - 1
        for i in [i for i in self.frames if i < keep_from]:
            del self.frames[i]
        if not self.silent:
            self.examples_cache = {v: e for v, e in self.examples_cache.items() if v >= w - 1}
            self.audio.drop_before(self.audio_start(w + 1)[0])  # earlier windows' examples are cached

    def duration_estimate(self) -> float:
        return self.duration if self.duration is not None else float("inf")


# --------------------------------------------------------------------------- pass 2: render

def render(runner: Runner, path: Path, dirs: dict, out: Path, side_by_side: Optional[Path]) -> int:
    """The video decoded again, each frame painted with its mask; its audio muxed back (re-encoded
    AAC, stereo at the source rate). Returns the frames written."""
    writers = []
    with VideoStream(path, audio_rate=None) as stream:
        rate = Fraction(stream.rate)
        audio_rate = stream.audio_rate if stream.has_audio else None
        i = 0
        early: list = []
        try:
            for kind, item in stream:
                if kind == "audio":
                    if writers:
                        for wr in writers:
                            wr.audio(item)
                    else:  # sound demuxed before the first picture: held until the writers exist
                        early.append(item)
                    continue
                rgb = to_rgb(item)
                if not writers:
                    h, w = rgb.shape[:2]
                    writers.append(VideoWriter(out, w, h, rate, audio_rate))
                    if side_by_side is not None:
                        writers.append(VideoWriter(side_by_side, 2 * even(w), h, rate, audio_rate))
                    for chunk in early:
                        for wr in writers:
                            wr.audio(chunk)
                painted = runner.masks.paint(rgb, runner.masks.read(dirs["real"] / f"{i:06d}.png"))
                writers[0].frame(painted)
                if side_by_side is not None:
                    zero = runner.masks.paint(rgb, runner.masks.read(dirs["zero"] / f"{i:06d}.png"))
                    h, w = even(rgb.shape[0]), even(rgb.shape[1])
                    writers[1].frame(np.concatenate([painted[:h, :w], zero[:h, :w]], axis=1))
                i += 1
            for wr in writers:
                wr.close()
        except BaseException:
            for wr in writers:
                wr.abort()
            raise
    return i


# --------------------------------------------------------------------------- one video, all videos

def probe(path: Path, allow_silent: bool) -> bool:
    """Whether ``path`` has an audio track; refuses (one line) a video without one unless
    ``allow_silent``, and a file PyAV cannot open."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DataError(f"{path}: no video stream; give a video file")
            has_audio = bool(c.streams.audio)
    except (av.error.FFmpegError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot open ({reason}); re-encode the video (ffmpeg -i in.x out.mp4)") from None
    if not has_audio and not allow_silent:
        raise DataError(f"{path}: no audio track; the model segments what sounds - give the video with its "
                        "sound, or --allow-silent to run with zeroed audio")
    return has_audio


def segment_video(runner: Runner, path: Path, out: Path, opts: SegmentOptions, quiet: bool) -> dict:
    name = path.stem
    tmp = inside(out, out / f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with VideoStream(path, wav_rate(runner.layout)) as stream:
            inf = _Infer(runner, stream, name, tmp, opts)
            if inf.silent and opts.ablation:
                raise DataError(f"{path}: no audio track, so --audio-ablation has no sound to compare with; "
                                "drop --audio-ablation")
            fps, duration_us = float(stream.rate), stream.duration_us
            bar = progress(quiet=quiet, desc=f"segment {name}", unit="window")
            try:
                inf.run(bar)
            finally:
                bar.close()
        video = inside(out, out / f"{name}.mp4")
        sbs = inside(out, out / f"{name}_sound_vs_zero.mp4") if opts.ablation == "zero" else None
        written = render(runner, path, inf.dirs, video, sbs)
        final = inside(out, out / name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic.fsync_dir(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    duration_s = duration_us / 1e6 if duration_us else written / fps
    doc = {
        "video": name, "source": str(path), "frames": written, "fps": fps, "duration_s": duration_s,
        "model_fps": inf.n, "windows": P.window_count(written, inf.rate),
        "passes_per_window": len(inf.passes(0)[2]),
        "setting": runner.cfg.setting,
        "audio": "none: no audio track, run with zeroed audio (--allow-silent)" if inf.silent else "real",
        "silent": inf.silent, "audio_ablation": opts.ablation,
        "seconds": inf.seconds,
        "legend": runner.masks.legend(inf.classes_seen, runner.classes),
        "outputs": {"video": video.name, "masks": f"{name}/masks",
                    "side_by_side": sbs.name if sbs else None,
                    "masks_zero": f"{name}/masks_zero" if sbs else None},
    }
    if opts.ablation:
        doc["mean_iou_ablated"] = float(np.mean([r["iou_ablated"] for r in inf.seconds]))
    atomic.write_text(inside(out, out / f"{name}.json"), json.dumps(doc, indent=2) + "\n")
    return doc


def check_videos(videos: list) -> list[Path]:
    """Files or folders of videos -> the video files; refuses a name used twice."""
    files: list[Path] = []
    for v in map(Path, videos):
        if v.is_dir():
            found = sorted(p for p in v.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
            if not found:
                raise DataError(f"{v}: no video file ({', '.join(VIDEO_EXTS)}); pass videos or a folder of them")
            files += found
        elif v.is_file():
            files.append(v)
        else:
            raise DataError(f"{v} does not exist; pass video files or a folder of them")
    seen: dict[str, Path] = {}
    for f in files:
        problem = safe_name(f.stem)
        if problem:
            raise DataError(f"{f}: the file name {problem}; rename the video")
        if f.stem in seen or f.stem == "index":
            raise DataError(f"{f}: output name {f.stem!r} also used by {seen.get(f.stem, 'index.html')}; "
                            "rename one of the videos")
        seen[f.stem] = f
    return files


def run_segment(checkpoint, videos: list, out, opts: SegmentOptions, quiet: bool = False) -> dict:
    """``avstrain segment``: every video of ``videos`` segmented into ``out`` (see the module
    docstring); returns ``{"videos": [documents], "index": path, "text": summary}``."""
    if opts.ablation not in (None,) + ABLATIONS:
        raise DataError(f"--audio-ablation {opts.ablation!r}; choose zero or shuffle")
    files = check_videos(videos)
    silent = {f: not probe(f, opts.allow_silent) for f in files}
    runner = Runner(Path(checkpoint), opts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    docs, lines = [], []
    for f in files:
        doc = segment_video(runner, f, out, opts, quiet)
        docs.append(doc)
        note = " (no audio track: run with zeroed audio, --allow-silent)" if silent[f] else ""
        abl = (f", mean IoU real vs {opts.ablation} {doc['mean_iou_ablated']:.3f}" if opts.ablation else "")
        lines.append(f"{f.name}: {doc['frames']} frames, {doc['windows']} window(s) x {doc['passes_per_window']} "
                     f"passes{abl} -> {out / doc['outputs']['video']}{note}")
    index = out / "index.html"
    atomic.write_text(index, render_page(docs, str(checkpoint)))
    lines.append(str(index))
    return {"videos": docs, "index": str(index), "text": "\n".join(lines)}
