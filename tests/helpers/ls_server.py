"""A real Label Studio server for the slow test (and the README screenshot): start it on 127.0.0.1,
log in, call its REST API, and photograph a task in headless Chromium.

Label Studio 1.2x disables legacy API tokens for a new organisation, so the client logs in with a
session (the login form, then the CSRF cookie as ``X-CSRFToken``), as the browser does.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tests.helpers.browser import _wait_port, find_browser

EMAIL, PASSWORD = "avs@example.com", "avs-test-password"


def label_studio_bin() -> Optional[str]:
    """The ``label-studio`` command: ``AVS_LABEL_STUDIO_BIN``, beside ``AVS_LABEL_STUDIO_PYTHON``, or on PATH."""
    given = os.environ.get("AVS_LABEL_STUDIO_BIN")
    if given and Path(given).is_file():
        return str(Path(given).absolute())  # the server runs in its own folder
    py = os.environ.get("AVS_LABEL_STUDIO_PYTHON")
    if py and (Path(py).parent / "label-studio").is_file():
        return str((Path(py).parent / "label-studio").absolute())
    return shutil.which("label-studio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``label-studio start`` in a fresh data folder, serving local files under ``document_root``."""

    def __init__(self, binary: str, data_dir: Path, document_root: Path, startup_s: float = 1200):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), LATEST_VERSION_CHECK="false",
                   LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
                   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(Path(document_root).absolute()))
        self.log = open(Path(data_dir) / "server.log", "wb")
        self.proc = subprocess.Popen([binary, "start", "--no-browser", "--internal-host", "127.0.0.1",
                                      "--port", str(self.port), "--username", EMAIL, "--password", PASSWORD],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
        end = time.time() + startup_s  # the first start migrates a fresh SQLite database: minutes on 2 cores
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if urllib.request.urlopen(self.base + "/health", timeout=5).status == 200:
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(2)
        else:
            raise RuntimeError(f"label-studio did not answer /health in {startup_s:.0f} s")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self._login()

    def _csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def _login(self):
        self.opener.open(self.base + "/user/login/", timeout=60).read()
        form = urllib.parse.urlencode({"email": EMAIL, "password": PASSWORD,
                                       "csrfmiddlewaretoken": self._csrf()}).encode()
        self.opener.open(urllib.request.Request(self.base + "/user/login/", data=form,
                                                headers={"Referer": self.base + "/user/login/"}), timeout=60)

    def api(self, method: str, path: str, body=None):
        """Call the REST API; the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"X-CSRFToken": self._csrf(), "Content-Type": "application/json",
                                              "Referer": self.base + "/"})
        with self.opener.open(req, timeout=300) as r:
            return json.loads(r.read() or b"null")

    def screenshot(self, path: str, out: Path, wait_s: float = 40, width: int = 1200, height: int = 800) -> bool:
        """A PNG of ``path`` (e.g. a task in the labeling view) as a logged-in user sees it; False without
        a Chromium."""
        import websocket  # websocket-client (test extra)

        browser = find_browser()
        if browser is None:
            return False
        profile = Path(tempfile.mkdtemp(prefix="avs-ls-chromium-"))
        args = [browser, "--headless", "--disable-gpu", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = _wait_port(profile, proc, 60)
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t.get("type") == "page")
            ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
            ids = iter(range(1, 1000))

            def call(method, **params):
                mid = next(ids)
                ws.send(json.dumps({"id": mid, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv())
                    if msg.get("id") == mid:
                        return msg.get("result", {})

            call("Network.enable")
            call("Network.setCookies", cookies=[{"name": c.name, "value": c.value, "domain": "127.0.0.1",
                                                 "path": "/"} for c in self.jar])
            call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            call("Page.navigate", url=self.base + path)
            time.sleep(wait_s)  # the labeling app renders after its own requests; no load event says when
            shot = call("Page.captureScreenshot", format="png")
            Path(out).write_bytes(base64.b64decode(shot["data"]))
            ws.close()
            return True
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(profile, ignore_errors=True)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
