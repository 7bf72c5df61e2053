import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll `condition` until it holds; fail naming `what` past the deadline (a bound on waiting, never a
    measurement)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


class Server:
    """`charter serve reward` in a process of its own on a free port (`--port 0`): ready once it has announced its
    URL, which it does once it listens. Its output goes to `log`, line by line."""

    def __init__(
        self, tmp_path: Path, judge: dict, token: str | None = TOKEN, launcher: str = "tests.serve.launch", **settings
    ) -> None:
        self.store = tmp_path / "store"
        config = {"judge": judge, "cache": str(tmp_path / "calls.sqlite"), "output_dir": str(self.store), **settings}
        path = tmp_path / "serve.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        args = ["serve", "reward", str(path), "--port", "0"] + (["--token", token] if token else [])
        env.pop("CHARTER_SERVE_TOKEN", None)
        self.log = tmp_path / "server.log"
        self.url = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", launcher, *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._announced = threading.Event()
        self._reader = threading.Thread(target=self._copy_output, daemon=True)
        self._reader.start()
        if not self._announced.wait(timeout=60) or not self.url:
            raise AssertionError("the server did not start: " + self.log.read_text())

    def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                if line.startswith("OpenRLHF: "):  # the last line announced, once the port listens
                    self.url = line.split()[2].split("/get_reward")[0]
                    self._announced.set()
        self._announced.set()  # it exited before announcing

    def request(self, path: str, data: bytes, headers: dict | None = None) -> tuple[int, Message, dict]:
        """POST raw bytes: the status, the headers (read case-insensitively) and the JSON answer (`{"text": ...}` for
        an answer that is no JSON)."""
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, _answer(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers, _answer(e.read())

    def post(self, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        status, _, answer = self.request(path, json.dumps(body).encode(), headers)
        return status, answer

    def get(self, path: str) -> str:
        return urllib.request.urlopen(f"{self.url}{path}", timeout=30).read().decode()

    def queued(self) -> int:
        return json.loads(self.get("/health"))["queued"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=60)  # the log holds every line the server wrote
        return code


def _answer(body: bytes) -> dict:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {"text": body.decode(errors="replace")}


@pytest.fixture
def start(tmp_path: Path):
    servers: list[Server] = []

    def _start(
        judge: dict | None = None, token: str | None = TOKEN, launcher: str = "tests.serve.launch", **settings
    ) -> Server:
        folder = tmp_path / f"server-{len(servers)}"
        folder.mkdir()
        server = Server(folder, judge or {"model": "scripted:cai", "rating": "verdict"}, token, launcher, **settings)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
