"""The demo's clips as raw videos, so the demo can start from videos like the real release
(``raw_videos/`` in the official layout) and ``avsprep extract`` is exercised on every demo.

Each clip becomes an mp4 (H.264 + AAC) at 30000/1001 fps, a rate that is not an integer: second
``l`` shows the clip's frame ``l + 1`` for all its video frames, so the frame the official rule
keeps (decoded index ``l * 30 + 28``, 4.97 s for the last second) is that frame; the sound is the
clip's 16 kHz wav. Paths: the layout's :meth:`~avsprep.datasets.base.Layout.raw_video_path` (S4
``s4_data/raw_videos/{split}/{category}/{name}.mp4``, MS3 ``ms3_data/raw_videos/{name}.mp4``, the
official scripts' input).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

# av at the top: this module is imported only by ``avsprep demo --raw-videos`` (inside the command,
# never by ``import avsprep.cli``), which always encodes.
import av
import numpy as np

from avsprep.audio.sources import read_wav
from avsprep.common import atomic
from avsprep.common.clikit import progress
from avsprep.common.images import open_image
from avsprep.datasets.avsbench import AVSBenchLayout

FPS = Fraction(30000, 1001)
CRF = "16"  # measured: extraction gives back the demo frames within ~4.2 grey levels on average
# (yuv420p chroma subsampling and H.264 smoothing of the frames' pixel noise)


def encode_clip(frames: list, pcm: np.ndarray, rate: int, path: Path, seconds: int = 5) -> None:
    """RGB frames (one per second) + int16 mono/stereo samples -> an mp4 written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.tmp_path_for(path).with_suffix(".mp4")
    try:
        with av.open(str(tmp), "w", format="mp4") as out:
            v = out.add_stream("libx264", rate=FPS)
            v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            v.options = {"crf": CRF, "preset": "fast"}
            v.thread_type = "NONE"  # deterministic bytes whatever the machine
            v.codec_context.thread_count = 1
            pcm = pcm.reshape(len(pcm), -1)
            layout = "mono" if pcm.shape[1] == 1 else "stereo"
            a = out.add_stream("aac", rate=rate, layout=layout)
            a.bit_rate = 96000
            n = int(seconds * FPS) + 1
            for i in range(n):
                second = min(int(i / FPS), len(frames) - 1)
                frame = av.VideoFrame.from_ndarray(frames[second], format="rgb24")
                for p in v.encode(frame):
                    out.mux(p)
            for p in v.encode(None):
                out.mux(p)
            x = (pcm.astype(np.float32) / 32768.0).T.copy()
            af = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
            af.sample_rate, af.pts = rate, 0
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode(None):
                out.mux(p)
        atomic.commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_raw_videos(root, quiet: bool = False) -> int:
    """Write ``raw_videos/`` for every clip of the S4/MS3 demo at ``root``; returns the count."""
    layout = AVSBenchLayout.from_root(root)
    clips = layout.clips()
    for clip in progress(clips, quiet=quiet, desc="raw videos", unit="clip"):
        frames = [np.asarray(open_image(layout.frame_path(clip, k), clip.name, f"frame {k}", "RGB"))
                  for k in range(1, 6)]
        wave, sr = read_wav(layout.wav_path(clip))
        pcm = np.clip(np.rint(wave * 32768), -32768, 32767).astype(np.int16)
        encode_clip(frames, pcm, sr, layout.raw_video_path(clip))
    return len(clips)
