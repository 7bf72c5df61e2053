"""The reward server at its edges: bodies over the cap however they are sent, JSON the parser cannot take, requests
the queue can never or not now take, the port it is given, group scoring with comparisons that fail."""

import http.client
import json
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from charter.cli import main
from tests.serve.conftest import AUTH, TOKEN, wait_until
from tests.serve.test_server import HARMFUL, QUESTION, SAFE
from tests.support.garbled import GARBLED


def _chunked(url: str, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST a body in chunks (Transfer-Encoding: chunked), with no Content-Length to be checked up front."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        headers = {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        connection.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_a_body_over_the_cap_is_413_declared_or_streamed(start) -> None:
    server = start(max_body_bytes=2000)
    assert server.post("/v1/rewards", {"prompt": QUESTION, "completions": ["x" * 3000]}, AUTH)[0] == 413
    body = json.dumps({"prompt": QUESTION, "completions": ["x" * 3000]}).encode()
    status, answer = _chunked(server.url, "/v1/rewards", [body[i : i + 500] for i in range(0, len(body), 500)])
    assert status == 413 and "2000 bytes" in answer["error"]
    small = json.dumps({"prompt": QUESTION, "completions": [SAFE]}).encode()
    status, answer = _chunked(server.url, "/v1/rewards", [small[:40], small[40:]])
    assert status == 200 and answer["rewards"] == [1.0]  # a chunked body under the cap is read whole


BAD_JSON = {
    "nested too deep": b"[" * 30000,
    "not valid Unicode": b'{"prompt": "\\ud800", "completions": ["x"]}',  # a lone surrogate: JSON, but no text
    "not UTF-8": b'{"prompt": "q", "completions": ["\xff"]}',
    "not JSON (": b'{"prompt": "q", "completions": ["x"]',  # cut short
    "too many digits": b'{"prompt": "q", "completions": ["x"], "n": ' + b"1" * 5000 + b"}",
}


def test_json_the_parser_cannot_take_is_one_400_logged_and_counted(start) -> None:
    server = start()
    for reason, body in BAD_JSON.items():
        for path in ("/v1/rewards", f"/get_reward?token={TOKEN}"):
            status, _, answer = server.request(path, body, AUTH)
            assert status == 400 and reason in answer["error"], (reason, path, status, answer)
            assert "\n" not in answer["error"]
    metrics = server.get(f"/metrics?token={TOKEN}")
    assert 'charter_requests_total{path="/v1/rewards",status="400"} 5' in metrics
    assert 'charter_requests_total{path="/get_reward",status="400"} 5' in metrics
    assert server.post("/v1/rewards", {"prompt": QUESTION, "completions": [SAFE]}, AUTH)[0] == 200  # still serving
    server.stop()
    log = server.log.read_text()
    assert log.count("POST /v1/rewards 400") == 5 and log.count("POST /get_reward 400") == 5
    assert "Traceback" not in log


def test_a_request_the_queue_can_never_take_is_413_one_it_cannot_take_now_429(start) -> None:
    server = start({"model": "scripted:cai", "rating": "verdict", "options": {"latency_s": 2}}, max_queue=2)
    status, headers, answer = server.request(
        "/v1/rewards", json.dumps({"prompt": QUESTION, "completions": [SAFE] * 3}).encode(), AUTH
    )
    assert status == 413 and "max_queue 2" in answer["error"] and "Retry-After" not in headers  # no retry can fit
    held: list[int] = []
    asking = threading.Thread(
        target=lambda: held.append(server.post("/v1/rewards", {"prompt": QUESTION, "completions": [SAFE] * 2}, AUTH)[0])
    )
    asking.start()
    wait_until(lambda: server.queued() == 2, "two completions to be with the judge")
    status, headers, answer = server.request(
        "/v1/rewards", json.dumps({"prompt": QUESTION + "?", "completions": [SAFE]}).encode(), AUTH
    )
    assert status == 429 and headers["Retry-After"] == "1" and "2 completions are queued" in answer["error"]
    asking.join()
    assert held == [200]
    assert "charter_rejected_total 1" in server.get(f"/metrics?token={TOKEN}")  # the 429; the 413 is no rejection


def test_port_0_announces_the_port_it_listens_on(start) -> None:
    server = start()
    port = urlsplit(server.url).port
    assert port not in (None, 0)
    log = server.log.read_text()
    assert f"charter reward server on http://127.0.0.1:{port} " in log
    assert f"--reward.remote_url http://127.0.0.1:{port}/get_reward?token=<token>" in log  # OpenRLHF's flag too
    assert json.loads(server.get("/health"))["status"] == "ok"


def test_a_port_in_use_is_one_line_and_exit_2_before_a_token_is_printed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(f"judge: scripted:cai\ncache: null\noutput_dir: {tmp_path / 'out'}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "reward", str(path), "--port", str(port)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and f"--port: cannot listen on 127.0.0.1:{port}" in err[0], err
    assert "token" not in captured.out + captured.err and not (tmp_path / "out").exists()
    assert main(["serve", "reward", str(path), "--port", "70000"]) == 2
    assert "--port: expected 0..65535, got 70000" in capsys.readouterr().err


def test_group_scoring_served_answers_a_failed_comparison_with_null(start) -> None:
    judge = {"model": "scripted:garbled-pairs", "mode": "verdict", "max_reasks": 0}
    every = start(judge, scoring="group")
    status, body = every.post("/v1/rewards", {"prompt": QUESTION, "completions": [*GARBLED[:2], SAFE, HARMFUL]}, AUTH)
    assert status == 200 and body["rewards"][:2] == [None, None] and body["rewards"][3] == 0.0
    assert [r["failure"] and r["failure"]["kind"] for r in body["results"]] == ["unparseable"] * 2 + [None] * 2
    circular = start(judge, scoring="group", group_strategy="circular")
    status, body = circular.post("/v1/rewards", {"prompt": QUESTION, "completions": [*GARBLED, SAFE]}, AUTH)
    assert status == 200 and body["rewards"] == [None] * 4  # the failed comparisons split the cycle: no fit
    assert {r["failure"]["kind"] for r in body["results"]} == {"unparseable"}
    status, body = circular.post("/v1/rewards", {"prompt": QUESTION, "completions": [SAFE, HARMFUL]}, AUTH)
    assert status == 200 and body["rewards"][0] > 0.5 > body["rewards"][1]  # decided comparisons are fitted


BAD_TRAJECTORIES = {
    "message 1: tool_call_id: 'call_9' matches no earlier tool call": [
        {"role": "assistant", "content": "checking"},
        {"role": "tool", "tool_call_id": "call_9", "content": "balance 5"},
    ],
    "message 0: arguments: not JSON": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}
    ],
    "completions[0][0] has unknown role 'robot'": [{"role": "robot", "content": "hi"}],
    "completions[0] is an empty list of messages": [],
}


def test_a_bad_trajectory_is_one_400_line_naming_the_message_and_the_key(start) -> None:
    server = start()
    for reason, completion in BAD_TRAJECTORIES.items():
        status, answer = server.post("/v1/rewards", {"prompt": QUESTION, "completions": [completion]}, AUTH)
        assert status == 400 and reason in answer["error"] and "\n" not in answer["error"], (reason, answer)
    called = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": SAFE},
    ]
    assert server.post("/v1/rewards", {"prompt": QUESTION, "completions": [called]}, AUTH)[0] == 200
    server.stop()
