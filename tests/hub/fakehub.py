"""A loopback stand-in for the Hugging Face Hub that speaks the wire format huggingface_hub's upload uses:
repo create, branch create, README metadata validation, preupload (regular vs LFS), the LFS batch API with
basic PUT transfers and verify, and the NDJSON commit; and what `snapshot_download` asks to read a repo back.
It records every request and rebuilds each commit's
files, so tests can assert exactly what an upload sent."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Commit:
    repo_id: str
    revision: str
    header: dict[str, Any]
    files: dict[str, bytes]
    lfs_paths: list[str]
    oid: str


@dataclass
class FakeHub:
    """State of the fake Hub: what it received and what it holds."""

    requests: list[Request] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    branches: list[tuple[str, str]] = field(default_factory=list)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    url: str = ""

    def all_bytes(self) -> bytes:
        """Every request body and every uploaded file, for 'the token is nowhere in it' checks."""
        return b"".join(r.body for r in self.requests) + b"".join(self.lfs_objects.values())

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


REPO = r"(?P<repo>[^/]+/[^/]+)"


class Handler(BaseHTTPRequestHandler):
    hub: FakeHub  # set on the subclass made per server

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None) -> None:
        data = json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, method: str) -> tuple[str, bytes]:
        body = self._body()
        self.hub.requests.append(Request(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        return self.path.split("?")[0], body

    def _authorized(self) -> bool:
        if (self.headers.get("Authorization") or "").startswith("Bearer "):
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    # -- routes ------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        path, body = self._record("POST")
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if path == "/api/validate-yaml":
            return self._send(200, {"errors": [], "warnings": []})
        if match := re.fullmatch(rf"/api/datasets/{REPO}/branch/(?P<branch>[^/]+)", path):
            self.hub.branches.append((match["repo"], match["branch"]))
            return self._send(200, {})
        if match := re.fullmatch(rf"/api/datasets/{REPO}/preupload/(?P<rev>[^/]+)", path):
            return self._preupload(match["repo"], json.loads(body))
        if match := re.fullmatch(rf"/datasets/{REPO}\.git/info/lfs/objects/batch", path):
            return self._lfs_batch(json.loads(body))
        if re.fullmatch(r"/lfs-verify/[0-9a-f]{64}", path):
            return self._send(200, {})
        if match := re.fullmatch(rf"/api/datasets/{REPO}/commit/(?P<rev>[^/]+)", path):
            return self._commit(match["repo"], match["rev"], body)
        self._send(404, {"error": f"fake hub: no route for POST {path}"})

    def do_PUT(self) -> None:  # noqa: N802
        path, body = self._record("PUT")
        if match := re.fullmatch(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", path):
            if hashlib.sha256(body).hexdigest() != match["oid"]:
                return self._send(400, {"error": "sha256 mismatch"})
            self.hub.lfs_objects[match["oid"]] = body
            return self._send(200, {})
        self._send(404, {"error": f"fake hub: no route for PUT {path}"})

    def do_GET(self) -> None:  # noqa: N802
        path, _ = self._record("GET")
        if match := re.fullmatch(rf"/api/datasets/{REPO}/revision/(?P<rev>[^/]+)", path):
            return self._repo_info(match["repo"], match["rev"])
        if match := re.fullmatch(rf"/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?P<sub>/.*)?", path):
            return self._tree(match["repo"], match["rev"])
        if match := re.fullmatch(rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
            return self._resolve(match["repo"], match["rev"], match["file"], body=True)
        self._send(404, {"error": f"fake hub: no route for GET {path}"})

    def do_HEAD(self) -> None:  # noqa: N802
        path, _ = self._record("HEAD")
        if match := re.fullmatch(rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
            return self._resolve(match["repo"], match["rev"], match["file"], body=False)
        self._send(404, {"error": f"fake hub: no route for HEAD {path}"})

    # -- handlers ----------------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        if not self._authorized():
            return
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.hub.url}/datasets/{repo_id}"
        if repo_id in self.hub.repos:  # the Hub's answer: 409 with the existing repo's url
            return self._send(409, {"error": "You already created this dataset repo", "url": url})
        self.hub.repos[repo_id] = payload
        self._send(200, {"url": url, "name": repo_id})

    def _preupload(self, repo_id: str, payload: dict) -> None:
        if not self._authorized():
            return
        if repo_id not in self.hub.repos:
            return self._send(404, {"error": "Repository not found"})
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for f in payload["files"]
        ]
        self._send(200, {"files": files, "commitOid": "0" * 40})

    def _lfs_batch(self, payload: dict) -> None:
        if not self._authorized():
            return
        objects = [
            {
                "oid": o["oid"],
                "size": o["size"],
                "authenticated": True,
                "actions": {
                    "upload": {"href": f"{self.hub.url}/lfs-upload/{o['oid']}"},
                    "verify": {"href": f"{self.hub.url}/lfs-verify/{o['oid']}"},
                },
            }
            for o in payload["objects"]
        ]
        self._send(200, {"transfer": "basic", "objects": objects})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        if not self._authorized():
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header, files, lfs_paths = {}, {}, []
        for line in lines:
            value = line["value"]
            if line["key"] == "header":
                header = value
            elif line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs_objects:
                    return self._send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                files[value["path"]] = self.hub.lfs_objects[value["oid"]]
                lfs_paths.append(value["path"])
        oid = hashlib.sha1(body).hexdigest()
        self.hub.commits.append(Commit(repo_id, revision, header, files, lfs_paths, oid))
        url = f"{self.hub.url}/datasets/{repo_id}/commit/{oid}"
        self._send(200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None, "success": True})


def _head_commit(hub: FakeHub, repo_id: str, revision: str) -> Commit | None:
    """The newest commit of a repo on a branch (or with that oid)."""
    for commit in reversed(hub.commits):
        if commit.repo_id == repo_id and revision in (commit.revision, commit.oid):
            return commit
    return None


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class DownloadRoutes:
    """What `snapshot_download` asks for: repo info, the file tree, and each file (HEAD, then GET)."""

    hub: FakeHub

    def _repo_info(self, repo_id: str, revision: str) -> None:
        commit = _head_commit(self.hub, repo_id, revision)
        if commit is None:
            return self._send(404, {"error": "Repository not found"})
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        self._send(200, {"id": repo_id, "sha": commit.oid, "private": False, "siblings": siblings, "tags": []})

    def _tree(self, repo_id: str, revision: str) -> None:
        commit = _head_commit(self.hub, repo_id, revision)
        if commit is None:
            return self._send(404, {"error": "Revision not found"})
        entries = []
        for path, content in sorted(commit.files.items()):
            entry = {"type": "file", "path": path, "size": len(content), "oid": _git_oid(content)}
            if path in commit.lfs_paths:
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 130}
            entries.append(entry)
        self._send(200, entries)

    def _resolve(self, repo_id: str, revision: str, path: str, body: bool) -> None:
        commit = _head_commit(self.hub, repo_id, revision)
        if commit is None or path not in commit.files:
            return self._send(404, {"error": "Entry not found"})
        content = commit.files[path]
        etag = hashlib.sha256(content).hexdigest() if path in commit.lfs_paths else _git_oid(content)
        self.send_response(200)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit.oid)
        self.end_headers()
        if body:
            self.wfile.write(content)


class Server:
    """The fake Hub on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.hub = FakeHub()
        handler = type("BoundHandler", (DownloadRoutes, Handler), {"hub": self.hub})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.hub.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self.hub

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
