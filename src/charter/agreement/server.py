"""`charter label`: a small local labeling page (stdlib http.server), guarded by a random URL token.

Model outputs are untrusted: the page renders them with textContent only, and a strict
Content-Security-Policy forbids inline script, so a response holding HTML or script is shown as text.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from charter.agreement.labels import open_labels
from charter.agreement.session import LabelSession
from charter.errors import CharterError

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"label.js": "text/javascript; charset=utf-8", "label.css": "text/css; charset=utf-8"}
MAX_BODY = 64 * 1024


def static_text(name: str) -> str:
    return resources.files("charter.agreement").joinpath("static", name).read_text(encoding="utf-8")


class LabelServer:
    """The labeling web server for one run; several annotators may use it at once."""

    def __init__(self, run_dir: str | Path, annotator: str, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        self.store = open_labels(run_dir)
        self.default_annotator = annotator
        LabelSession(self.store, annotator)  # fail early: no sample, bad name
        self.token = token or secrets.token_urlsafe(24)
        self.sessions: dict[str, LabelSession] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/?token={self.token}"

    def session(self, annotator: str | None) -> LabelSession:
        name = (annotator or self.default_annotator).strip()
        with self.lock:
            if name not in self.sessions:
                self.sessions[name] = LabelSession(self.store, name)
            return self.sessions[name]

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            app = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    app: LabelServer
    server_version = "charter-label"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # keep the terminal (and the token) quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _authorised(self, query: dict[str, list[str]]) -> bool:
        given = self.headers.get("X-Charter-Token") or (query.get("token") or [""])[0]
        return secrets.compare_digest(given.encode(), self.app.token.encode())

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            self._send(403, b"forbidden: this page needs the token printed by charter label\n", "text/plain")
            return
        try:
            self._dispatch(method, url.path, query)
        except CharterError as exc:
            self._json(400, {"error": str(exc)})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise CharterError("request body too large")
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            raise CharterError("request body is not JSON") from None
        if not isinstance(data, dict):
            raise CharterError("request body must be a JSON object")
        return data

    # -- routes ----------------------------------------------------------------------------------------
    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        if method == "GET" and path == "/":
            page = static_text("label.html").replace("{token}", html.escape(self.app.token, quote=True))
            self._send(200, page.encode(), "text/html; charset=utf-8")
        elif method == "GET" and path.startswith("/static/") and path[8:] in STATIC:
            self._send(200, static_text(path[8:]).encode(), STATIC[path[8:]])
        elif method == "GET" and path == "/api/state":
            self._json(200, self.app.session((query.get("annotator") or [None])[0]).state())
        elif method == "POST" and path == "/api/label":
            body = self._body()
            session = self.app.session(body.get("annotator"))
            session.label(str(body.get("pair_id")), str(body.get("choice")))
            self._json(200, session.state())
        elif method == "POST" and path == "/api/undo":
            session = self.app.session(self._body().get("annotator"))
            undone = session.undo()
            self._json(200, {**session.state(), "undone": undone})
        else:
            self._send(404, b"not found\n", "text/plain")
