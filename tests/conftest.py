"""Shared fixtures. Reference data is read in place from ../shared/ (never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AVS_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
META = SHARED / "avsbench_meta"


def need(path: Path) -> Path:
    """Skip the test with a clear reason when a shared fixture is absent."""
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path} (set AVS_SHARED to the shared/ folder)")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return need(FIXTURES)


@pytest.fixture
def meta_dir() -> Path:
    return need(META)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo dataset (AVSBench S4 layout), written once per test session."""
    from avsprep.demo import write_demo

    out = tmp_path_factory.mktemp("demo") / "root"
    write_demo(out, clips=12, seed=0, quiet=True)
    return out
