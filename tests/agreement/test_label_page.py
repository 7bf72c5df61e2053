"""The labeling page, end to end in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from charter.agreement.labels import open_labels, to_pair_terms
from charter.runs.labels import labels as label_rows
from charter.runs.labels import sample as sample_rows
from charter.agreement.sampling import spotcheck
from charter.agreement.server import LabelServer

from .conftest import XSS, make_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LabelServer]:
    items = [{"pair_id": f"w{i}", "p_a": 0.6 + 0.05 * i, "prompt": f"question {i} <b>bold?</b>",
              "a": f"answer one {i}", "b": f"answer two {i}"} for i in range(5)]
    items[0]["a"] = XSS
    items[0]["b"] = XSS
    run = make_run(tmp_path / "run", items)
    spotcheck(run, 5, seed=0)
    srv = LabelServer(run, "alice", port=0)
    srv.start()
    yield srv
    srv.close()


def fetch(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_requests_without_the_token_are_refused(server: LabelServer) -> None:
    base = server.url.split("?")[0]
    assert fetch(server.url) == 200
    assert fetch(base) == 403
    assert fetch(base + "?token=wrong") == 403
    assert fetch(base + "api/state") == 403
    assert fetch(base + "static/label.js") == 403
    assert fetch(base + "api/label", b'{"pair_id": "w1", "choice": "A"}') == 403
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url, timeout=10) as response:
        csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def stored(server: LabelServer, annotator: str = "alice") -> dict[str, str]:
    return {r.pair_id: r.label for r in label_rows(server.store, annotator)}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make browser)")
def test_label_page_in_chromium(server: LabelServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    sample = sample_rows(server.store)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(server.url)
        progress = page.locator("#progress")
        expect(progress).to_have_text("0 / 5 labeled by alice")
        # the first pair in labeling order; find and label until the XSS pair has been on screen
        seen_xss = False
        for key, expected in (("1", "first"), ("b", "second"), ("t", "tie")):
            pair_id = page.locator("body").get_attribute("data-pair-id")
            if pair_id == "w0":
                seen_xss = True
                expect(page.locator("#response-a")).to_have_text(XSS)
                expect(page.locator("#response-b")).to_have_text(XSS)
            done = len(stored(server))
            page.keyboard.press(key)
            expect(progress).to_have_text(f"{done + 1} / 5 labeled by alice")
            row = next(r for r in sample if r.pair_id == pair_id)
            assert stored(server)[pair_id] == to_pair_terms(expected, row.shown_order)
        page.reload()
        expect(progress).to_have_text("3 / 5 labeled by alice")
        page.keyboard.press("u")
        expect(progress).to_have_text("2 / 5 labeled by alice")
        assert len(stored(server)) == 2
        page.keyboard.press("Control+z")
        expect(progress).to_have_text("1 / 5 labeled by alice")
        for count, key in enumerate(("2", "s", "a", "3"), start=2):
            if page.locator("body").get_attribute("data-pair-id") == "w0":
                seen_xss = True
                expect(page.locator("#response-a")).to_have_text(XSS)
            page.keyboard.press(key)
            expect(progress).to_have_text(f"{count} / 5 labeled by alice")
        expect(progress).to_have_text("5 / 5 labeled by alice")
        expect(page.locator("#done")).to_be_visible()
        assert seen_xss
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img").count() == 0 and page.locator("script").count() == 1  # only label.js
        # a second annotator labels independently
        page.locator("#annotator").fill("bob")
        page.locator("#annotator").press("Enter")
        expect(progress).to_have_text("0 / 5 labeled by bob")
        page.locator("#btn-a").click()
        expect(progress).to_have_text("1 / 5 labeled by bob")
        assert len(stored(server, "bob")) == 1 and len(stored(server, "alice")) == 5
        browser.close()
    with open_labels(server.store.run_dir) as store:  # persisted in the run store itself
        assert len(label_rows(store)) == 6
