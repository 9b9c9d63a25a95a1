"""Time steps per clip: the one home of the number (5 for S4/MS3, 10 for AVSS).

A shard item holds ``STEPS_PER_CLIP[setting]`` steps (frames, masks, log-mel examples). A layout
says the same as ``layout.steps``; this table is for code that has no layout (the shard schema
and readers, training). AVSS ``v1`` clips have 5 real steps and are padded to 10
(``AVSS_REAL_STEPS``, per subset).
"""

from __future__ import annotations

STEPS_PER_CLIP = {"s4": 5, "ms3": 5, "avss": 10}
AVSS_REAL_STEPS = {"v1s": 5, "v1m": 5, "v2": 10}  # real (not padded) steps of an AVSS clip, per subset
