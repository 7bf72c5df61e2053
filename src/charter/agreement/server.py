"""`charter label`: a small local labeling page (stdlib http.server), guarded by a random URL token.

Model outputs are untrusted: the page renders them with textContent only, and a strict
Content-Security-Policy forbids inline script, so a response holding HTML or script is shown as text.
Requests must name the bound host (no DNS rebinding); a POST must carry the token in a header, be JSON
and, when the browser says where it comes from, come from the page's own origin (no cross-site posts).
Binding to anything but loopback needs `allow_remote` and says so. A request body larger than `MAX_BODY` is refused
(413), one that stalls for `request_timeout` seconds times out (408), and a body whose fields are missing or of the
wrong type is a 400 with a one-line JSON error.
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
from charter.errors import ArgumentError, CharterError, UserError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC = {"label.js": "text/javascript; charset=utf-8", "label.css": "text/css; charset=utf-8"}
MAX_BODY = 64 * 1024
REQUEST_TIMEOUT = 30.0
FIELDS = {
    "/api/label": ("annotator", "pair_id", "choice"),
    "/api/undo": ("annotator",),
    "/api/item": ("annotator", "pair_id", "item_id", "response", "verdict"),
    "/api/step": ("annotator", "pair_id", "response", "step"),
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def static_text(name: str) -> str:
    return resources.files("charter.agreement").joinpath(f"static/{name}").read_text(encoding="utf-8")


class LabelServer:
    """The labeling web server for one run; several annotators may use it at once."""

    def __init__(
        self,
        run_dir: str | Path,
        annotator: str,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        allow_remote: bool = False,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        number = isinstance(request_timeout, int | float) and not isinstance(request_timeout, bool)
        if not number or not 0 < request_timeout < float("inf"):
            raise ArgumentError("request_timeout", f"{request_timeout!r} is not a positive number of seconds")
        if not is_loopback(host) and not allow_remote:
            raise ArgumentError(
                "host",
                f"{host!r} is not a loopback address: anyone who can reach it and sees the "
                "URL can label; allow it explicitly (allow_remote) if that is what you want",
                option="--host",
            )
        self.host, self.remote = host, not is_loopback(host)
        self.request_timeout = float(request_timeout)
        self.store = open_labels(run_dir)
        self.default_annotator = annotator
        LabelSession(self.store, annotator)  # fail early: no sample, bad name
        self.token = token or secrets.token_urlsafe(24)
        self.sessions: dict[str, LabelSession] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/?token={self.token}"

    def allowed_host(self, header: str | None) -> bool:
        """Whether a Host header names this server (a remote bind, explicitly allowed, accepts any)."""
        if self.remote:
            return True
        names = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]", self.host)}
        return (header or "").lower() in names

    def session(self, annotator: str | None) -> LabelSession:
        name = (annotator or self.default_annotator).strip()
        with self.lock:
            if name not in self.sessions:
                self.sessions[name] = LabelSession(self.store, name)
            return self.sessions[name]

    def serve_forever(self) -> None:
        self._serving = True
        self.httpd.serve_forever()

    def start(self) -> threading.Thread:
        self._serving = True
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if getattr(self, "_serving", False):  # shutdown() waits for a serve loop: none, and it waits forever
            self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            app = server
            timeout = server.request_timeout  # a socket timeout on every read: a stalled client is let go

        return Handler


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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

    def _authorised(self, method: str, query: dict[str, list[str]]) -> bool:
        """GETs may carry the token in the URL (the page's own link); a POST only in the X-Charter-Token header,
        which no cross-site form or simple request can set."""
        given = self.headers.get("X-Charter-Token") or ("" if method == "POST" else (query.get("token") or [""])[0])
        return secrets.compare_digest(given.encode(), self.app.token.encode())

    def _refusal(self, method: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """Why a request is refused, or None."""
        if not self.app.allowed_host(self.headers.get("Host")):
            return 421, "misdirected request: this server answers only to its own host name\n"
        if not self._authorised(method, query):
            return 403, "forbidden: this page needs the token printed by charter label\n"
        if method == "POST":
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                return 403, "forbidden: cross-origin request\n"
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                return 415, "unsupported media type: send JSON\n"
        return None

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        refused = self._refusal(method, query)
        if refused is not None:
            self.close_connection = method == "POST"  # its body is left unread
            self._send(refused[0], refused[1].encode(), "text/plain")
            return
        try:
            self._dispatch(method, url.path, query)
        except _BadRequest as exc:
            self._send(exc.status, f"{exc}\n".encode(), "text/plain")
        except CharterError as exc:
            self._json(400, {"error": str(exc)})
        except Exception:
            self.close_connection = True
            self._json(500, {"error": "internal error in the labeling server (its terminal shows the traceback)"})
            raise

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _body(self) -> dict:
        given = self.headers.get("Content-Length")
        header = "0" if given is None else given.strip()
        if not header.isdigit():  # malformed or negative: read nothing, answer at once
            self.close_connection = True
            raise _BadRequest(400, f"bad Content-Length {header!r}")
        length = int(header)
        if length > MAX_BODY:
            self.close_connection = True
            raise _BadRequest(413, "request body too large")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise _BadRequest(408, f"request body not received within {self.app.request_timeout:g} s") from None
        if len(raw) < length:
            self.close_connection = True
            raise _BadRequest(400, "request body shorter than its Content-Length")
        try:
            data = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise UserError("request body is not JSON") from None
        if not isinstance(data, dict):
            raise UserError("request body must be a JSON object")
        return data

    def _fields(self, path: str) -> dict[str, str]:
        """The request body's fields for `path`: each one a string, none missing, none unknown."""
        data, names = self._body(), FIELDS[path]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise UserError(f"unknown field(s) {', '.join(map(repr, unknown))}; send {', '.join(names)}")
        for name in names:
            if name not in data:
                raise UserError(f"missing field '{name}' (a string)")
            if not isinstance(data[name], str):
                raise UserError(f"field '{name}' must be a string, not {type(data[name]).__name__}")
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
            body = self._fields(path)
            session = self.app.session(body["annotator"])
            session.label(body["pair_id"], body["choice"])
            self._json(200, session.state())
        elif method == "POST" and path == "/api/item":
            body = self._fields(path)
            session = self.app.session(body["annotator"])
            session.label_item(body["pair_id"], body["item_id"], body["response"], body["verdict"])
            self._json(200, session.state())
        elif method == "POST" and path == "/api/step":
            body = self._fields(path)
            session = self.app.session(body["annotator"])
            session.label_step(body["pair_id"], body["response"], body["step"])
            self._json(200, session.state())
        elif method == "POST" and path == "/api/undo":
            session = self.app.session(self._fields(path)["annotator"])
            undone = session.undo()
            self._json(200, {**session.state(), "undone": undone})
        else:
            self._send(404, b"not found\n", "text/plain")
