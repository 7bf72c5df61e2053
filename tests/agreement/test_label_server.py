"""The labeling server answers every bad request: wrong fields are a 400 JSON line, a stalled body times out."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter.agreement.labels import open_labels
from charter.agreement.sampling import spotcheck
from charter.agreement.server import MAX_BODY, REQUEST_TIMEOUT, LabelServer
from charter.errors import ArgumentError
from charter.runs.labels import labels as label_rows
from charter.runs.labels import sample as sample_rows

from .conftest import make_run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LabelServer]:
    run = make_run(tmp_path / "run", [{"pair_id": f"s{i}", "p_a": 0.6 + 0.05 * i} for i in range(3)])
    spotcheck(run, 3, seed=0)
    srv = LabelServer(run, "alice", port=0, request_timeout=0.5)
    srv.start()
    yield srv
    srv.close()


def post(server: LabelServer, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "X-Charter-Token": server.token}
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def first_pair(server: LabelServer) -> str:
    return sample_rows(server.store)[0].pair_id


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/label", {"annotator": 7, "pair_id": "P", "choice": "A"}, "field 'annotator' must be a string, not int"),
        ("/api/label", {"annotator": ["x"], "pair_id": "P", "choice": "A"}, "'annotator' must be a string, not list"),
        (
            "/api/label",
            {"annotator": None, "pair_id": "P", "choice": "A"},
            "'annotator' must be a string, not NoneType",
        ),
        ("/api/label", {"pair_id": "P", "choice": "A"}, "missing field 'annotator'"),
        ("/api/label", {"annotator": "alice", "pair_id": 3, "choice": "A"}, "field 'pair_id' must be a string"),
        ("/api/label", {"annotator": "alice", "pair_id": "P", "choice": {}}, "field 'choice' must be a string"),
        ("/api/label", {"annotator": "alice", "pair_id": "P", "choice": "maybe"}, "choice 'maybe' is not one of"),
        ("/api/label", {"annotator": "alice", "pair_id": "P", "choice": "A", "x": 1}, "unknown field(s) 'x'"),
        ("/api/label", {"annotator": "<b>", "pair_id": "P", "choice": "A"}, "annotator name '<b>'"),
        ("/api/undo", {"annotator": 1.5}, "field 'annotator' must be a string, not float"),
        ("/api/undo", {}, "missing field 'annotator'"),
        ("/api/step", {"annotator": "alice", "pair_id": "P", "response": "A", "step": 3}, "'step' must be a string"),
        ("/api/step", {"annotator": "alice", "pair_id": "P", "response": "A"}, "missing field 'step'"),
        ("/api/step", {"annotator": "alice", "pair_id": "P", "response": "A", "step": "none"}, "not a trajectory"),
    ],
)
def test_a_bad_field_is_a_400_with_one_json_line(server: LabelServer, path: str, body: dict, message: str) -> None:
    raw = json.dumps(body).replace('"P"', json.dumps(first_pair(server))).encode()
    status, answer = post(server, path, raw)
    error = json.loads(answer)["error"]
    assert status == 400 and message in error and "\n" not in error
    assert label_rows(server.store) == []
    status, _ = post(server, "/api/label", json.dumps({"annotator": "alice", "pair_id": first_pair(server),
                                                       "choice": "A"}).encode())  # fmt: skip
    assert status == 200 and len(label_rows(server.store)) == 1  # the server goes on answering


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[1, 2]", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_a_400(server: LabelServer, body: bytes) -> None:
    status, answer = post(server, "/api/undo", body[:MAX_BODY])
    assert status == 400 and "request body" in json.loads(answer)["error"]


def test_a_too_large_body_is_refused_unread(server: LabelServer) -> None:
    status, answer = post(server, "/api/undo", b" " * (MAX_BODY + 1))
    assert status == 413 and b"too large" in answer


def test_a_stalled_body_times_out(server: LabelServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            f"POST /api/undo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"X-Charter-Token: {server.token}\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"annot')  # then nothing more
        reply = b"".join(iter(lambda: sock.recv(4096), b"")).decode("latin-1")  # until the server closes
    assert reply.startswith("HTTP/1.0 408") and "not received within 0.5 s" in reply
    assert time.monotonic() - started < 8


def test_an_idle_connection_is_closed(server: LabelServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(4096) == b""  # closed by the server, not by this test's own 10 s timeout
    assert time.monotonic() - started < 8


def test_the_timeout_defaults_to_30_s_and_must_be_positive(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [{"pair_id": "t", "p_a": 0.7}])
    spotcheck(run, 1, seed=0)
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ArgumentError, match="request_timeout"):
            LabelServer(run, "alice", port=0, request_timeout=bad)  # type: ignore[arg-type]
    srv = LabelServer(run, "alice", port=0)
    try:
        assert srv.request_timeout == REQUEST_TIMEOUT == 30.0
        assert srv.httpd.RequestHandlerClass.timeout == 30.0
    finally:
        srv.close()
    with open_labels(run) as store:
        assert store.count("human_labels") == 0
