"""Open a local HTML file in headless Chromium over the DevTools protocol: what loaded, which
requests were made, and a full-page screenshot. Used by the report's browser test (and by hand
for the README screenshot: ``python3 -m tests.helpers.browser INDEX.html OUT.png``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")

PAGE_FACTS = """JSON.stringify({
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
  metricTable: !!document.querySelector('table.metrics'),
  galleries: Array.from(document.querySelectorAll('table.gallery')).map(t => t.tBodies[0].rows.length),
  height: document.documentElement.scrollHeight,
  scripts: document.scripts.length
})"""

# Every <video>: waits (up to ~20 s) until each can play through or fails, then reports its
# readyState (>= 3: HAVE_FUTURE_DATA, 'canplay' fired), duration, size and error.
VIDEO_FACTS = """(async () => {
  const vids = Array.from(document.querySelectorAll('video'));
  for (let i = 0; i < 200 && vids.some(v => v.readyState < 3 && !v.error); i++)
    await new Promise(r => setTimeout(r, 100));
  return JSON.stringify({
    videos: vids.map(v => ({src: v.currentSrc, readyState: v.readyState, duration: v.duration,
                            width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code})),
    h264: document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'),
    vp9: document.createElement('video').canPlayType('video/webm; codecs="vp9, opus"'),
    height: document.documentElement.scrollHeight, scripts: document.scripts.length
  });
})()"""


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _wait_port(profile: Path, proc, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    end = time.time() + timeout
    while time.time() < end:
        if marker.is_file():
            text = marker.read_text().split()
            if text:
                return int(text[0])
        if proc.poll() is not None:
            raise RuntimeError(f"browser exited with {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.1)
    raise RuntimeError("browser did not open its DevTools port")


def open_page(html_file: Path, screenshot: Path | None = None, width: int = 1400, timeout: float = 60.0,
              facts_js: str = PAGE_FACTS) -> dict:
    """Load ``html_file``; return ``{"requests": [urls], "facts": {...}}`` and write a PNG screenshot.

    ``facts_js``: the expression giving the facts as a JSON string (it may return a promise of one,
    e.g. :data:`VIDEO_FACTS`, which waits for the page's videos)."""
    import websocket  # websocket-client (test extra)

    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found")
    profile = Path(tempfile.mkdtemp(prefix="avs-chromium-"))
    args = [browser, "--headless", "--disable-gpu", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={width},1000", "--no-first-run", "--hide-scrollbars", "about:blank"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = _wait_port(profile, proc, timeout)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        ids = iter(range(1, 1000))
        requests: list[str] = []

        def call(method, **params):
            mid = next(ids)
            ws.send(json.dumps({"id": mid, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("method") == "Network.requestWillBeSent":
                    requests.append(msg["params"]["request"]["url"])
                if msg.get("method") == "Page.loadEventFired":
                    events.append("load")
                if msg.get("id") == mid:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

        events: list[str] = []
        call("Network.enable")
        call("Page.enable")
        call("Page.navigate", url=Path(html_file).resolve().as_uri())
        end = time.time() + timeout
        while "load" not in events and time.time() < end:
            msg = json.loads(ws.recv())
            if msg.get("method") == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
            if msg.get("method") == "Page.loadEventFired":
                events.append("load")
        facts = json.loads(call("Runtime.evaluate", expression=facts_js, returnByValue=True,
                                awaitPromise=True)["result"]["value"])
        if screenshot is not None:
            import base64

            call("Emulation.setDeviceMetricsOverride", width=width, height=min(int(facts["height"]), 16000),
                 deviceScaleFactor=1, mobile=False)
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        ws.close()
        return {"requests": requests, "facts": facts, "loaded": "load" in events}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(open_page(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)["facts"]))
