"""Label Studio's own tools for the tests: its converter (``label-studio-sdk``) and its server.

Both are optional and heavy (the SDK pins numpy < 2.3 and opencv 4.12, the server brings Django),
so they may live in another Python: ``AVS_LABEL_STUDIO_PYTHON`` names it; else this Python is used
when it has the package. Tests skip, saying this, when neither has it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

SCRIPT = Path(__file__).with_name("ls_converter.py")
HOW = ("pip install 'avsprep[labelstudio]' (or label-studio), or set AVS_LABEL_STUDIO_PYTHON to a "
       "Python that has it")


def ls_python(module: str = "label_studio_sdk") -> Optional[str]:
    """A Python that can import ``module``, or None."""
    py = os.environ.get("AVS_LABEL_STUDIO_PYTHON")
    if py and Path(py).is_file():
        ok = subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode == 0
        return py if ok else None
    return sys.executable if importlib.util.find_spec(module) else None


def run_converter(py: str, *args) -> str:
    """Run tests/helpers/ls_converter.py under ``py``; its stdout (AssertionError with stderr on failure)."""
    r = subprocess.run([py, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def as_exported(tasks_file: Path, out: Path) -> Path:
    """Our tasks as Label Studio exports them after an import: a task id and an annotation id each
    (its converters need them)."""
    tasks = json.loads(Path(tasks_file).read_text(encoding="utf-8"))
    for i, t in enumerate(tasks, start=1):
        t["id"] = i
        for j, a in enumerate(t.get("annotations", []), start=1):
            a.update(id=i * 100 + j, completed_by=1, was_cancelled=False)
    out.write_text(json.dumps(tasks), encoding="utf-8")
    return out
