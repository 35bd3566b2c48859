"""The HTML report in a real browser: it renders, runs its filter script without console errors, and stays inert.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (NUL-separated JSON on file
descriptors 3 and 4), so no websocket client and no network port are needed. Skipped where chromium is not
installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _report_fixture import HOSTILE, build_costs, build_events, build_run

from tuneport.report.render import render_report

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.path.exists(p)), None)  # fmt: skip
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

_TIMEOUT_S = 60.0


class Browser:
    """Just enough of a DevTools-protocol client for one page."""

    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: the protocol lives on fds 3 (commands in) and 4 (replies out)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=wire, close_fds=False)  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]
        self.session: str | None = None

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_child, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                buf += chunk
                while b"\0" in buf:
                    message, buf = buf.split(b"\0", 1)
                    self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def _pump(self, deadline: float) -> None:
        message = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        if message is None:
            raise AssertionError(
                "chromium closed the DevTools pipe: " + b"".join(self.stderr)[-2000:].decode(errors="replace")
            )
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append(message)

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True
    ) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + _TIMEOUT_S
        while self._next_id not in self._replies:
            self._pump(deadline)
        reply = self._replies.pop(self._next_id)
        assert "error" not in reply, f"{method} failed: {reply['error']}"
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self._pump(deadline)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self) -> None:
        try:
            os.write(self._to_child, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors and warnings, uncaught exceptions, blocked resources (CSP), and opened dialogs."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"uncaught: {params.get('exceptionDetails')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            out.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            out.append(f"log: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            out.append(f"dialog opened: {params.get('message')}")
    return out


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return render_report(build_run(), out, job_events=build_events(), costs=build_costs(), formats=("html",))[
        "html"
    ]


def test_report_renders_in_chromium_without_errors_and_its_filter_works(
    report_html: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    browser = Browser(tmp_path / "profile")
    try:
        targets = browser.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        browser.session = browser.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                       session=False)["sessionId"]  # fmt: skip
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable")
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1200, "height": 1500, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        browser.send("Page.navigate", {"url": report_html.as_uri()})
        browser.wait_event("Page.loadEventFired")

        # Everything the page shows was loaded: three plots decoded from data: URIs, nothing fetched.
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.complete && i.naturalWidth > 100, i.src.slice(0, 22)])"
        )
        assert len(images) == 3 and all(ok and src == "data:image/png;base64," for ok, src in images), images

        # The verdict opens the page, above the first table, one line per comparison with both prices.
        verdict = browser.evaluate(
            "(() => { const v = document.getElementById('verdict'), t = document.querySelector('table');"
            " return [v.getBoundingClientRect().top < t.getBoundingClientRect().top, v.offsetParent !== null,"
            " Array.from(v.querySelectorAll('li')).map(li => li.textContent)]; })()"
        )
        assert verdict[0] and verdict[1], verdict
        assert len(verdict[2]) == 2 and all(t.startswith("tuned beats base on ") and t.endswith(
            "; $0.12 vs $0.12 per 1,000 items") for t in verdict[2]), verdict[2]  # fmt: skip

        # The cost table: one row per endpoint, money rounded, no JSON; the chart is drawn and shown.
        cells = browser.evaluate(
            "Array.from(document.querySelectorAll('#cost-table tbody tr')).map(r => r.cells[2].textContent)"
        )
        assert cells == ["$0.12", "$0.12"]
        costs_text = browser.evaluate(
            "(() => { let n = document.getElementById('costs'), t = ''; while ((n = n.nextElementSibling) &&"
            " n.tagName !== 'H2') { t += n.innerText + '\\n'; } return t; })()"
        )
        assert "{" not in costs_text and "$1.23" in costs_text and "it cost $" in costs_text
        chart = browser.evaluate(
            "(() => { const i = document.querySelector('img[alt^=\"cost per 1,000 items\"]');"
            " return [i.complete, i.naturalWidth, i.getBoundingClientRect().width]; })()"
        )
        assert chart[0] and chart[1] > 300 and chart[2] > 300, chart
        links = browser.evaluate("Array.from(document.querySelectorAll('#costs ~ table a[href]')).map(a => a.href)")
        assert "https://openai.com/api/pricing" in links

        # The hostile output is text on the page, not markup: no injected element exists, no dialog opened.
        assert browser.evaluate("document.querySelectorAll('script').length") == 1
        assert browser.evaluate("document.querySelectorAll('main img[onerror], main img[src=x]').length") == 0
        shown = browser.evaluate(
            "(() => { const p = document.querySelector('#item-3 .col:nth-child(2) pre').cloneNode(true);"
            " p.querySelectorAll('del').forEach(d => d.remove()); return p.textContent; })()"
        )
        assert shown == HOSTILE

        # The disagreement filter hides agreeing items and says how many are shown.
        total = browser.evaluate("document.querySelectorAll('.item').length")
        disagree = browser.evaluate("document.querySelectorAll('.item[data-disagree=\"1\"]').length")
        assert 0 < disagree < total == 40
        visible = "Array.from(document.querySelectorAll('.item')).filter(e => e.offsetParent !== null).length"
        assert browser.evaluate(visible) == total
        browser.evaluate("document.getElementById('only-disagree').click()")
        assert browser.evaluate(visible) == disagree
        assert browser.evaluate("document.getElementById('shown-count').textContent") == (
            f"{disagree} of {total} items shown"
        )
        browser.evaluate("document.getElementById('only-disagree').click()")
        assert browser.evaluate(visible) == total

        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"])
        time.sleep(0.2)  # let late console messages arrive before checking
        browser.send("Runtime.evaluate", {"expression": "1"})
        problems = _problems(browser.events)
    finally:
        browser.close()

    png = tmp_path / "report.png"
    png.write_bytes(shot)
    keep = os.environ.get("TUNEPORT_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)
    assert problems == []
    assert len(shot) > 20_000
    pixels = imread(png)
    assert pixels.shape[:2] == (1500, 1200)
    rgb = (pixels[..., :3] * 255).astype("uint8").reshape(-1, 3)
    distinct = {tuple(p) for p in rgb[::7].tolist()}
    assert len(distinct) > 50, "the screenshot is (nearly) blank"
    # Not all white: text, tables and the warning box cover a real share of the page.
    assert (rgb.min(axis=1) < 200).mean() > 0.02
