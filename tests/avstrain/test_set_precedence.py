"""Feature: `avstrain train --set KEY=...` wins over a flag the user did not give (issue 18);
a flag and a disagreeing --set for the same key is a usage error; a bad value is refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from avstrain import engine
from avstrain.cli import cli


@pytest.fixture
def captured(monkeypatch):
    """The config `avstrain train` would train with (the engine is replaced by a recorder)."""
    seen = {}

    def fake_train(cfg, shards, run, **kw):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(engine, "train", fake_train)
    return seen


def invoke(tmp_path, *args):
    return CliRunner().invoke(cli, ["train", str(tmp_path), "-o", str(tmp_path / "run"), "--preset", "demo",
                                    "--quiet", *args])


@pytest.mark.parametrize("key,value,expected", [
    ("w_ce", "0", 0.0), ("w_pairwise", "0.25", 0.25), ("w_audio", "0", 0.0), ("lr", "3e-4", 3e-4),
    ("seed", "7", 7), ("epochs", "2", 2), ("batch_size", "3", 3), ("device", "cpu", "cpu"),
])
def test_set_wins_over_flags_not_given(tmp_path, captured, key, value, expected):
    res = invoke(tmp_path, "--set", f"{key}={value}")
    assert res.exit_code == 0, res.output
    assert getattr(captured["cfg"], key) == expected


def test_flag_given_alone_still_applies(tmp_path, captured):
    res = invoke(tmp_path, "--lr", "5e-4", "--set", "seed=9")
    assert res.exit_code == 0, res.output
    assert captured["cfg"].lr == 5e-4 and captured["cfg"].seed == 9


def test_flag_and_equal_set_agree(tmp_path, captured):
    res = invoke(tmp_path, "--w-ce", "0.5", "--set", "w_ce=0.50")
    assert res.exit_code == 0, res.output
    assert captured["cfg"].w_ce == 0.5


def test_flag_and_conflicting_set_is_usage_error(tmp_path, captured):
    res = invoke(tmp_path, "--lr", "1e-3", "--set", "lr=1e-4")
    assert res.exit_code == 2
    assert "--lr 0.001 and --set lr=1e-4 disagree" in res.output
    assert "cfg" not in captured


def test_bad_set_value_refused_in_one_line(tmp_path, captured):
    res = invoke(tmp_path, "--set", "lr=abc")
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == ["Error: config key 'lr': cannot use 'abc' as a number"]
    assert "cfg" not in captured
