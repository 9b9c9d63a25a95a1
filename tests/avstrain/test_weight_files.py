"""avstrain weights list|fetch|verify: one table of published files; downloads only on request,
checked against the SHA-256 prefix, nothing left behind on a mismatch. ``fetch`` is tested
against a local HTTP server on 127.0.0.1 (no network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from avstrain import weight_files
from avstrain.cli import cli


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tiny_row(monkeypatch, content: bytes, check=lambda p: "checked") -> str:
    """A table row for a small file whose published name carries its hash prefix."""
    prefix = hashlib.sha256(content).hexdigest()[:8]
    row = replace(weight_files.WEIGHTS["vggish"], name="tiny", file=f"tiny-{prefix}.pth", hash_prefix=prefix,
                  check=check)
    monkeypatch.setitem(weight_files.WEIGHTS, "tiny", row)
    return row.file


def test_fetch_from_a_local_server_verifies_the_hash_and_prints_the_set_line(server, monkeypatch, tmp_path):
    folder, base = server
    content = b"weights" * 1000
    name = _tiny_row(monkeypatch, content)
    (folder / name).write_bytes(content)
    dest = tmp_path / "w"
    r = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--to", str(dest), "--url", f"{base}/{name}", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (dest / name).read_bytes() == content
    assert sorted(p.name for p in dest.iterdir()) == [name]
    assert f"--set vggish_weights={(dest / name).resolve()}" in r.output
    r = CliRunner().invoke(cli, ["weights", "verify", str(dest / name)])
    assert r.exit_code == 0 and f"matches the prefix {name[5:13]}" in r.output, r.output


def test_fetch_refuses_a_file_whose_hash_does_not_match_and_leaves_nothing(server, monkeypatch, tmp_path):
    folder, base = server
    name = _tiny_row(monkeypatch, b"the published bytes")
    (folder / name).write_bytes(b"other bytes, e.g. a captive portal page")
    dest = tmp_path / "w"
    r = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--to", str(dest), "--url", f"{base}/{name}", "--quiet"])
    assert r.exit_code == 1
    assert "invalid hash value" in r.output and "nothing was kept" in r.output
    assert list(dest.iterdir()) == []  # no file, no .partial


def test_fetch_removes_a_file_whose_content_is_not_what_the_row_says(server, monkeypatch, tmp_path):
    folder, base = server
    content = b"not a state dict"
    name = _tiny_row(monkeypatch, content, check=weight_files.WEIGHTS["vggish"].check)
    (folder / name).write_bytes(content)
    dest = tmp_path / "w"
    r = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--to", str(dest), "--url", f"{base}/{name}", "--quiet"])
    assert r.exit_code == 1 and "is not VGGish" in r.output, r.output
    assert list(dest.iterdir()) == []


def test_fetch_of_a_missing_url_fails_in_one_line(server, monkeypatch, tmp_path):
    _, base = server
    _tiny_row(monkeypatch, b"x")
    r = CliRunner().invoke(cli, ["weights", "fetch", "tiny", "--to", str(tmp_path / "w"), "--url",
                                 f"{base}/absent.pth", "--quiet"])
    assert r.exit_code == 1 and "download failed" in r.output and "404" in r.output
    assert list((tmp_path / "w").iterdir()) == []


def test_fetch_of_the_google_drive_avss_models_says_how_to_get_them(tmp_path):
    r = CliRunner().invoke(cli, ["weights", "fetch", "avss-pvt", "--to", str(tmp_path / "w")])
    assert r.exit_code == 1
    assert weight_files.GOOGLE_DRIVE_AVSS in r.output and "weights verify FILE --name avss-pvt" in r.output
    assert not (tmp_path / "w").exists()


def test_verify_refuses_a_file_whose_name_hash_does_not_match(tmp_path):
    p = tmp_path / "vggish-10086976.pth"
    p.write_bytes(b"truncated download")
    r = CliRunner().invoke(cli, ["weights", "verify", str(p)])
    assert r.exit_code == 1 and "10086976" in r.output and "download it again" in r.output


def test_verify_of_a_renamed_file_uses_the_table_prefix(tmp_path):
    p = tmp_path / "my_vggish.pth"
    p.write_bytes(b"not the published file")
    r = CliRunner().invoke(cli, ["weights", "verify", str(p), "--name", "vggish"])
    assert r.exit_code == 1 and "the table (vggish) says 10086976" in r.output


def test_verify_without_a_published_hash_checks_the_content(tmp_path, monkeypatch):
    from avsprep.common.errors import DataError

    def check(path):
        if path.read_bytes() != b"good":
            raise DataError(f"{path}: not a PVT-v2-b5 state dict")
        return "loads strictly"

    row = replace(weight_files.WEIGHTS["pvt_v2_b5"], name="nohash", file="nohash.pth", check=check)
    monkeypatch.setitem(weight_files.WEIGHTS, "nohash", row)
    p = tmp_path / "nohash.pth"
    p.write_bytes(b"good")
    r = CliRunner().invoke(cli, ["weights", "verify", str(p)])
    assert r.exit_code == 0 and hashlib.sha256(b"good").hexdigest() in r.output and "loads strictly" in r.output
    assert f"--set backbone_weights={p.resolve()}" in r.output
    p.write_bytes(b"bad")
    r = CliRunner().invoke(cli, ["weights", "verify", str(p)])
    assert r.exit_code == 1 and "not a PVT-v2-b5 state dict" in r.output
    other = tmp_path / "unknown.pth"
    other.write_bytes(b"?")
    r = CliRunner().invoke(cli, ["weights", "verify", str(other)])
    assert r.exit_code == 1 and "--name" in r.output  # nothing to compare with: said, not passed


def test_list_names_every_file_the_presets_need():
    from avstrain.config import load_preset, preset_names
    from avstrain.system import missing_pretrained

    r = CliRunner().invoke(cli, ["weights", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["vggish"]["hash_prefix"] == "10086976" and rows["resnet50"]["file"] == "resnet50-19c8e357.pth"
    assert rows["avss-pvt"]["direct_download"] is False and rows["pvt_v2_b5"]["hash_prefix"] is None
    for name in preset_names():
        cfg = load_preset(name)
        # what a require_pretrained preset refuses to start without is exactly what the table lists
        missing = " ".join(missing_pretrained(cfg, has_vggish=False))
        for key, row in weight_files.needs(cfg):
            assert f"{name} ({key})" in rows[row]["presets"]
            if cfg.require_pretrained:
                assert rows[row]["file"] in missing, (name, row)
