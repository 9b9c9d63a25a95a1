"""Benchmark ``avstrain segment``'s inference against a naive loop, same process, CPU.

Model: the ``demo`` preset (tiny backbone, 128 px input, tiny audio encoder), random weights
(the speed does not depend on them), saved as a checkpoint and loaded as ``segment`` loads it.
Video: a real test clip (tests/data/videos/bbb_25fps_48k_5.1.mp4, 132 frames, 25 fps), or
``VIDEO``. Both sides decode the video with ``VideoStream``, make each window's log-mel once,
and write a PNG mask at the video's size for every frame.

- ours: ``avstrain.segment``'s first pass (windows streamed, the official pass and the ``--fps``
  dense passes of a window run together, ``--batch-size`` passes per forward);
- naive: one window, one pass, frame by frame: for every frame, the 5-frame pass holding it run
  alone (batch 1), only that frame's mask kept.

Reported: output frames per second of each (after one warm-up run each). Progress goes to
stderr; the last stdout line is one JSON document.

    python tools/bench_segment.py [--rounds 2] [--fps N] [--batch-size 8] [VIDEO]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VIDEO = REPO / "tests" / "data" / "videos" / "bbb_25fps_48k_5.1.mp4"


def demo_checkpoint(folder: Path) -> Path:
    import torch

    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import resolve_config
    from avstrain.system import build_system

    cfg = resolve_config("demo", None, {"device": "cpu"})
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=23, has_vggish=False)
    path = folder / "demo.pt"
    save_checkpoint(path, model, None, cfg, epoch=0, step=0, classes=[str(i) for i in range(23)])
    return path


def ours(runner, video: Path, out: Path, opts) -> int:
    from avsprep.common.clikit import NullBar
    from avsprep.extract import wav_rate
    from avsprep.extract.frames import VideoStream
    from avstrain.segment import _Infer

    with VideoStream(video, wav_rate(runner.layout)) as stream:
        inf = _Infer(runner, stream, video.stem, out, opts)
        inf.run(NullBar())
    return inf.count


def naive(runner, video: Path, out: Path, opts) -> int:
    import numpy as np

    from avsprep.extract import wav_rate
    from avsprep.extract.audio import moviepy_duration
    from avsprep.extract.frames import VideoStream, to_rgb
    from avstrain.segment import TAIL_SECONDS
    from avstrain.segment import plan as P

    frames, chunks = [], []
    with VideoStream(video, wav_rate(runner.layout)) as stream:
        for kind, item in stream:
            if kind == "video":
                rgb = to_rgb(item)
                frames.append(runner.model_frame(rgb))
                size = (rgb.shape[1], rgb.shape[0])
            else:
                chunks.append(item)
        rate, arate = Fraction(stream.rate), stream.audio_rate
        duration = moviepy_duration(stream.duration_us)
    audio = np.concatenate(chunks)
    n = opts.fps or P.default_fps(rate)
    examples = {}
    out.mkdir(parents=True, exist_ok=True)
    for i in range(len(frames)):
        w, k, l = P.mask_source(i, rate, n)
        if w not in examples:
            start, length = P.audio_span(w, duration, TAIL_SECONDS)
            examples[w] = runner.examples(audio[int(round(arate * start)):], arate, length, f"window {w}")
        one = P.clamp(P.dense_passes(w, rate, n)[k], len(frames) - 1)
        scores = runner.run(np.stack([frames[j] for j in one])[None], [examples[w]], zero_audio=False)
        mask = runner.masks.at_size(scores[0, l], *size)
        (out / f"{i:06d}.png").write_bytes(runner.masks.png(mask))
    return len(frames)


def timed(fn, runner, video, opts, rounds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        fn(runner, video, Path(tmp) / "warm", opts)
        frames, t0 = 0, time.perf_counter()
        for r in range(rounds):
            frames += fn(runner, video, Path(tmp) / f"r{r}", opts)
        return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fps", type=int, default=None, help="Dense passes per second (default: the video's rate, <= 25).")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("video", nargs="?", type=Path, default=VIDEO)
    args = ap.parse_args()

    import torch

    from avstrain.segment import Runner, SegmentOptions

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        opts = SegmentOptions(fps=args.fps, batch_size=args.batch_size, device="cpu")
        runner = Runner(demo_checkpoint(Path(tmp)), opts)
        print("timing ours ...", file=sys.stderr)
        r_ours = timed(ours, runner, args.video, opts, args.rounds)
        print("timing the naive loop ...", file=sys.stderr)
        r_base = timed(naive, runner, args.video, opts, args.rounds)
    print(json.dumps({"metric": "segment_frames_per_s", "unit": "frames/s", "ours": round(r_ours, 2),
                      "baseline": round(r_base, 2), "ratio": round(r_ours / r_base, 2),
                      "video": args.video.name, "fps": args.fps, "batch_size": args.batch_size,
                      "rounds": args.rounds, "threads": torch.get_num_threads(),
                      "note": "demo preset, random weights, CPU; inference pass (decode, log-mel, model, "
                              "mask PNGs), one process"}))


if __name__ == "__main__":
    main()
