"""Benchmark ``avsprep extract`` against the official preprocessing recipe, same process.

Baseline (the official recipe re-stated in tests/helpers/official_extract.py): imageio's ffmpeg
reader decodes every frame, every frame is ``cv2.resize``d, the 5 kept ones picked; the wav made
the moviepy 1.x way (an ffmpeg pipe at 44.1 kHz, the 200,000-sample buffer, 2,000-sample
chunks). Ours: ``avsprep.extract.render_clip`` (one PyAV pass over the container, only the 5
chosen frames converted and resized, the moviepy-exact wav as a pure function). Both then encode
the 5 PNGs and the wav in memory; nothing is written to disk. One process, one clip at a time,
the real test clips (tests/data/videos) in turn, ``--rounds`` times, after one warm-up round.

Progress goes to stderr; the last stdout line is one JSON document.

    python tools/bench_extract.py [--rounds 5] [VIDEO ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VIDEOS = REPO / "tests" / "data" / "videos"
CLIPS = ["bbb_25fps_48k_5.1.mp4", "bbb_29.97fps_44k_stereo.mp4", "bbb_7.288fps_22k_mono.mp4"]


def official(path: Path) -> tuple[list, bytes]:
    import cv2

    from avsprep.extract.audio import wav_bytes
    from tests.helpers.official_extract import moviepy_wav_samples, official_frames

    _, frames = official_frames(path, 5)
    pngs = [cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
    return pngs, wav_bytes(moviepy_wav_samples(path))


def ours(path: Path) -> tuple[list, bytes]:
    from avsprep.extract import Job, render_clip

    pngs, wav, findings = render_clip(Job(str(path), path.stem, "train", "race_car", 0))
    assert not findings, findings
    return pngs, wav


def rate(fn, rounds: int) -> float:
    for name in CLIPS:  # warm-up: imports, codec init, page cache
        fn(VIDEOS / name)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for name in CLIPS:
            fn(VIDEOS / name)
    return rounds * len(CLIPS) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("videos", nargs="*", type=Path,
                    help="Videos to time instead of the test clips (e.g. the 1280x720 bigbuckbunny.mp4).")
    args = ap.parse_args()
    global VIDEOS, CLIPS
    if args.videos:
        VIDEOS, CLIPS = Path("/"), [str(p.resolve()) for p in args.videos]
    # same output first: identical wavs, PNGs within the test tolerance (checked by the tests)
    for name in CLIPS:
        a, b = ours(VIDEOS / name), official(VIDEOS / name)
        assert a[1] == b[1], f"{name}: wav differs from the official recipe"
    print("timing ours ...", file=sys.stderr)
    r_ours = rate(ours, args.rounds)
    print("timing the official recipe ...", file=sys.stderr)
    r_base = rate(official, args.rounds)
    print(json.dumps({"metric": "extract_clips_per_s", "unit": "clips/s", "ours": round(r_ours, 2),
                      "baseline": round(r_base, 2), "ratio": round(r_ours / r_base, 2),
                      "clips": CLIPS, "rounds": args.rounds,
                      "note": "one process, one clip at a time"}))


if __name__ == "__main__":
    main()
