"""The embedded demo releases, written in the real layouts: a synthetic AVSBench S4/MS3
release (``avsbench``) and a synthetic AVSBench-semantic release (``avss``); ``render``
holds what they share. ``write_demo`` is the one entry (``avsprep demo``)."""

from __future__ import annotations

from avsprep.demo.avsbench import write_avsbench_demo
from avsprep.demo.avss import write_avss_demo

# clips when not given: S4/MS3 total clips; AVSS clips per subset
DEFAULT_CLIPS = {"s4": 192, "avss": 6}


def write_demo(out, clips=None, seed: int = 0, quiet: bool = False, classes: int = 4, workers: int = 1,
               like=None, *, setting: str = "s4", distractor: bool = False,
               distractor_sounds: float = 0.75) -> dict:
    """Write a demo release at ``out``; a summary with ``text``.

    ``setting="s4"``: the AVSBench layout (S4, or MS3 with ``like`` an MS3 metadata CSV),
    ``clips`` in all (split 4:1:1), see ``avsbench.write_avsbench_demo``. ``setting="avss"``:
    an AVSBench-semantic release, ``clips`` per subset, see ``avss.write_avss_demo``
    (``classes``, ``workers``, ``like`` and ``distractor`` do not apply to it).
    """
    if clips is None:
        clips = DEFAULT_CLIPS[setting]
    if setting == "avss":  # the one dispatch between the two demo writers
        if distractor:
            raise ValueError("the distractor is drawn in the S4/MS3 demo only")
        return write_avss_demo(out, clips=clips, seed=seed, quiet=quiet)
    return write_avsbench_demo(out, clips=clips, seed=seed, quiet=quiet, classes=classes, workers=workers, like=like,
                               distractor=distractor, distractor_sounds=distractor_sounds)
