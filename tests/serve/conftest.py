import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp_path: Path, judge: dict, token: str | None = TOKEN, **settings) -> None:
        self.store = tmp_path / "store"
        config = {"judge": judge, "cache": str(tmp_path / "calls.sqlite"), "output_dir": str(self.store), **settings}
        path = tmp_path / "serve.yaml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        args = ["serve", "reward", str(path), "--port", str(self.port)] + (["--token", token] if token else [])
        env.pop("CHARTER_SERVE_TOKEN", None)
        self.log = tmp_path / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.serve.launch", *args], cwd=ROOT, env=env,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the server did not start: " + self.log.read_text())

    def post(self, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers=headers or {}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def start(tmp_path: Path):
    servers: list[Server] = []

    def _start(judge: dict | None = None, token: str | None = TOKEN, **settings) -> Server:
        server = Server(tmp_path, judge or {"model": "scripted:cai", "rating": "verdict"}, token, **settings)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
