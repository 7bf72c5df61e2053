"""The labeling page, end to end in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter.agreement.labels import open_labels, to_pair_terms
from charter.agreement.sampling import spotcheck
from charter.agreement.server import LabelServer
from charter.runs.labels import labels as label_rows
from charter.runs.labels import sample as sample_rows

from .conftest import XSS, make_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LabelServer]:
    items = [
        {
            "pair_id": f"w{i}",
            "p_a": 0.6 + 0.05 * i,
            "prompt": f"question {i} <b>bold?</b>",
            "a": f"answer one {i}",
            "b": f"answer two {i}",
        }
        for i in range(5)
    ]
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
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
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


# -- hardening: each probe of the labeling server, over a raw socket ----------------------------------------


def raw_request(server: LabelServer, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, float]:
    """Send a hand-made HTTP request; (status, seconds until the answer)."""
    import socket
    import time

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        reply = sock.recv(4096).decode("latin-1")
    return int(reply.split(" ", 2)[1]), time.monotonic() - started


UNDO = b'{"annotator": "alice"}'


def post_head(
    server: LabelServer,
    *,
    host: str | None = None,
    token_header: bool = True,
    query: str = "",
    origin: str | None = None,
    content_type: str = "application/json",
    length: str = str(len(UNDO)),
) -> str:
    lines = [
        f"POST /api/undo{query} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{server.port}'}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
    ]
    if token_header:
        lines.append(f"X-Charter-Token: {server.token}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return "\n".join(lines) + "\n"


def test_a_well_formed_post_is_answered(server: LabelServer) -> None:
    assert raw_request(server, post_head(server), UNDO)[0] == 200


def test_a_foreign_host_name_is_refused(server: LabelServer) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    assert raw_request(server, post_head(server, host=f"evil.example:{server.port}"), UNDO)[0] == 421
    get = f"GET /?token={server.token} HTTP/1.1\nHost: evil.example\n"
    assert raw_request(server, get)[0] == 421


def test_a_post_needs_the_token_in_a_header(server: LabelServer) -> None:
    """A cross-site text/plain form post can put the token in the query string, never in a header."""
    head = post_head(server, token_header=False, query=f"?token={server.token}", content_type="text/plain")
    assert raw_request(server, head, UNDO)[0] == 403


def test_a_cross_origin_or_non_json_post_is_refused(server: LabelServer) -> None:
    assert raw_request(server, post_head(server, origin="http://evil.example"), UNDO)[0] == 403
    assert raw_request(server, post_head(server, content_type="text/plain"), UNDO)[0] == 415
    assert raw_request(server, post_head(server, origin=f"http://127.0.0.1:{server.port}"), UNDO)[0] == 200


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", ""])
def test_a_bad_content_length_is_400_at_once(server: LabelServer, length: str) -> None:
    status, seconds = raw_request(server, post_head(server, length=length))
    assert status == 400 and seconds < 2


def test_binding_beyond_loopback_needs_an_explicit_flag(tmp_path: Path, capsys) -> None:
    from charter.cli import main
    from charter.errors import ArgumentError

    run = make_run(tmp_path / "run", [{"pair_id": "w", "p_a": 0.7}])
    spotcheck(run, 1, seed=0)
    with pytest.raises(ArgumentError, match="not a loopback address"):
        LabelServer(run, "alice", host="0.0.0.0", port=0)
    assert main(["label", str(run), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--host: '0.0.0.0' is not a loopback address" in capsys.readouterr().err
    srv = LabelServer(run, "alice", host="0.0.0.0", port=0, allow_remote=True)
    try:
        assert srv.remote and srv.allowed_host("anything:1")
    finally:
        srv.close()
