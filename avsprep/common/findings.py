"""Findings: what readers and checks report instead of raising.

A finding has a stable ``code``, a ``severity`` (error/warning/info), the file,
clip and frame it is about, and a one-line message. Callers decide whether
findings fail the run (``--strict`` turns warnings into failures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    file: Optional[str] = None
    clip: Optional[str] = None
    frame: Optional[int] = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """One line: ``severity CODE file clip frame: message``."""
        where = " ".join(
            p for p in (
                self.file or "",
                f"clip={self.clip}" if self.clip else "",
                f"frame={self.frame}" if self.frame is not None else "",
            ) if p
        )
        return f"{self.severity:<7} {self.code} {where}: {self.message}".replace("  ", " ")


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    """0 when clean, 1 on any error (or any warning under ``strict``)."""
    sev = {f.severity for f in findings}
    if "error" in sev or (strict and "warning" in sev):
        return 1
    return 0


# code -> (severity, meaning): the finding-code registry. ``avsprep extract``'s codes are here;
# validate's and the annotation readers' (avsprep.validate.CODES) are still in their modules.
CODES: dict[str, tuple[str, str]] = {
    "video-missing": ("error", "a metadata CSV row whose video is not under the sources"),
    "video-undecodable": ("error", "a video file ffmpeg (PyAV) cannot open or decode"),
    "video-no-audio": ("error", "a video without an audio track"),
    "video-too-short": ("error", "a video shorter than the clip it must give (5 s, or 10 - start for S4)"),
    "audio-silent": ("error", "a video whose audio is all zeros"),
    "video-variable-rate": ("warning", "variable frame rate: frames may differ from the official reader's "
                                       "constant-rate ones; the clip is written"),
}
