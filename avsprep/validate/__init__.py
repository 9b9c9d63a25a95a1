"""``avsprep validate``: coverage and box checks of a box table against a release's metadata.

Per clip listed for the chosen splits (AVSS: and subsets): are all its frames annotated, how many
boxes each, does each label name a class (S4: the clip's category; AVSS: one of its a_obj classes),
are boxes inside the real frame (size read from the image header), finite, non-degenerate, not
duplicated. For an AVSS release also the release itself (:mod:`avsprep.validate.avss_release`).
Reader findings saved by ``import`` (``TABLE.findings.json``) are merged in.

:func:`run_validate` reads the files, for every layout; :func:`avsprep.validate.coverage.check_coverage`
is the pure core. Finding codes are stable; the full list is :data:`avsprep.common.findings.CODES`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from avsprep.annotations.table import read_table, sidecar_path
from avsprep.common.findings import Finding
from avsprep.common.jsonread import loads_limited
from avsprep.datasets import open_layout
from avsprep.datasets.frames import read_frame_sizes
from avsprep.validate.coverage import Report, check_coverage


def load_sidecar(table_path: Path) -> list[Finding]:
    """Reader findings saved by ``import`` beside the table (empty if there is none)."""
    path = sidecar_path(table_path)
    if not path.exists():
        return []
    try:
        doc = loads_limited(path.read_text(encoding="utf-8"))
        return [Finding(**{k: d.get(k) for k in ("code", "severity", "message", "file", "clip", "frame")})
                for d in doc["findings"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Finding.of("findings-sidecar-unreadable", f"cannot read it ({exc}); re-run import",
                           path.name)]


def run_validate(table_path, root, splits: Optional[list[str]] = None, size_policy: str = "rescale",
                 strict: bool = False, subsets=None, quiet: bool = True) -> Report:
    """Read the table, the release's metadata and frame sizes (each frame opened once), run the
    layout's release checks and the coverage core; return the report."""
    table_path = Path(table_path)
    layout = open_layout(root, subsets=subsets)
    df = read_table(table_path)
    clips = layout.clips(splits)
    index = layout.clip_index()
    wanted = {c.name for c in clips}
    annotated = defaultdict(list)
    for v, k in zip(df["video"], df["frame"]):
        if v in wanted and int(k) in layout.frame_indices(index[v]):
            annotated[v].append(int(k))
    keys = [(c, k) for c in clips for k in layout.size_frames(c, annotated.get(c.name, []))]
    sizes, errors = read_frame_sizes(layout, keys)
    checks = layout.extra_checks(clips, sizes, errors, quiet=quiet)
    # import findings about the selected clips (S4/MS3: also about clips the metadata does not list)
    extra = [f for f in load_sidecar(table_path)
             if f.clip is None or f.clip in wanted or (layout.table_checks and f.clip not in index)]
    report = check_coverage(df, layout, clips, sizes, size_policy=size_policy, splits=splits or None,
                            extra_findings=extra + checks, strict=strict)
    report.summary["table"] = str(table_path)
    report.summary["root"] = str(layout.root)
    return report
