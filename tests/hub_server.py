"""A loopback stand-in for the Hugging Face Hub's file endpoint, for tests that must not touch the network.

    with serve_hub({("org/repo", commit_sha, "model.safetensors"): data}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hf_hub_download("org/repo", "model.safetensors", revision=commit_sha, endpoint=hub.url)

It answers ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` the way ``huggingface_hub``
2.x expects of a plain (non-Xet) file: ``X-Repo-Commit`` (the revision, so use 40-hex commit shas),
an ``ETag`` (the sha256 of the bytes, like an LFS file) and ``Content-Length``, with no redirect.
It never sends the ``X-Xet-*`` headers, so the client downloads over plain HTTP. Unknown paths get
404 with the ``X-Error-Code`` the client maps to RepositoryNotFoundError, RevisionNotFoundError or
RemoteEntryNotFoundError.

It also takes uploads, as ``HfApi.create_repo``, ``upload_folder`` / ``create_commit`` and
``add_space_variable`` of huggingface_hub 2.4 send them:

- ``POST /api/repos/create``: records the repo in ``hub.repos[(repo_type, repo_id)]`` (the request's
  JSON); 409 when it exists, which ``create_repo(exist_ok=True)`` accepts;
- ``POST /api/validate-yaml``: 400 with an error when the README's front matter is not a YAML mapping;
- ``POST /api/{type}s/{repo_id}/preupload/{revision}``: every file is "regular" (sent base64 inside the
  commit), so neither LFS nor Xet transfers are exercised;
- ``POST /api/{type}s/{repo_id}/commit/{revision}``: the ndjson commit; appends a ``Commit`` to
  ``hub.commits`` and serves the repo's files (this commit's on top of the previous ones) at the new
  commit sha and at ``main``, model repos at ``/{repo_id}/resolve/...``, the others at
  ``/{type}s/{repo_id}/resolve/...``;
- ``POST /api/spaces/{repo_id}/variables``: records ``hub.variables[repo_id][key] = value``.

Writes to a repo that was not created get 404 ``RepoNotFound``. ``hub.authorizations`` logs the
``Authorization`` header of every write.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

FileKey = tuple[str, str, str]  # (repo_id, revision, filename)
RepoKey = tuple[str, str]  # (repo_type: "model" | "dataset" | "space", repo_id)


@dataclass(frozen=True)
class Commit:
    """One commit received: its repo, new sha, summary and the files it added (path -> bytes)."""

    repo_type: str
    repo_id: str
    oid: str
    summary: str
    files: dict[str, bytes]


@dataclass
class HubServer:
    """A running server. ``files`` may be changed while it runs; ``requests`` logs (method, path)."""

    url: str
    files: dict[FileKey, bytes]
    requests: list[tuple[str, str]] = field(default_factory=list)
    repos: dict[RepoKey, dict] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)

    def url_prefix(self, repo_type: str, repo_id: str) -> str:
        """How the repo appears in URLs (and as the repo part of ``files`` keys)."""
        return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            hub.requests.append((self.command, self.path))
            path = urlsplit(self.path).path
            repo_id, sep, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            repo_id, revision, filename = unquote(repo_id), unquote(revision), unquote(filename)
            data = hub.files.get((repo_id, revision, filename)) if sep else None
            if data is None:
                self._not_found(repo_id, revision)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", revision)
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def _not_found(self, repo_id: str, revision: str) -> None:
            keys = list(hub.files)
            if not any(r == repo_id for r, _, _ in keys):
                code = "RepoNotFound"
            elif not any(r == repo_id and v == revision for r, v, _ in keys):
                code = "RevisionNotFound"
            else:
                code = "EntryNotFound"
            body = f"{code}: {self.path}".encode()
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Error-Code", code)
            if code == "EntryNotFound":
                self.send_header("X-Repo-Commit", revision)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_POST(self) -> None:
            hub.requests.append((self.command, self.path))
            hub.authorizations.append(self.headers.get("Authorization"))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            repo_write = re.fullmatch(r"/api/(model|dataset|space)s/(.+)/(preupload|commit)/[^/]+", path)
            variables = re.fullmatch(r"/api/spaces/(.+)/variables", path)
            if path == "/api/repos/create":
                self._create_repo(json.loads(body))
            elif path == "/api/validate-yaml":
                self._validate_yaml(json.loads(body)["content"])
            elif repo_write:
                repo_type, repo_id, action = repo_write[1], unquote(repo_write[2]), repo_write[3]
                if self._repo_exists(repo_type, repo_id) and action == "preupload":
                    self._preupload(body)
                elif (repo_type, repo_id) in hub.repos:
                    self._commit(repo_type, repo_id, body)
            elif variables:
                repo_id = unquote(variables[1])
                if self._repo_exists("space", repo_id):
                    payload = json.loads(body)
                    hub.variables.setdefault(repo_id, {})[payload["key"]] = payload["value"]
                    self._json(200, {k: {"value": v} for k, v in hub.variables[repo_id].items()})
            else:
                self._json(404, {"error": f"this loopback Hub has no endpoint {path}"})

        def _json(self, status: int, payload: object, error_code: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.end_headers()
            self.wfile.write(data)

        def _repo_exists(self, repo_type: str, repo_id: str) -> bool:
            if (repo_type, repo_id) in hub.repos:
                return True
            self._json(404, {"error": f"Repository not found: {repo_type} {repo_id}"}, "RepoNotFound")
            return False

        def _create_repo(self, payload: dict) -> None:
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = f"{hub.url}/{hub.url_prefix(repo_type, repo_id)}"
            if (repo_type, repo_id) in hub.repos:
                self._json(409, {"error": "You already created this repo", "url": url})
                return
            hub.repos[(repo_type, repo_id)] = payload
            self._json(200, {"url": url, "name": repo_id})

        def _validate_yaml(self, content: str) -> None:
            import yaml

            head, sep, rest = content.partition("---\n")
            front = rest.partition("\n---")[0] if sep and not head.strip() else ""
            try:
                meta = yaml.safe_load(front) if front else {}
            except yaml.YAMLError as e:
                meta = f"invalid YAML: {e}"
            if not isinstance(meta, dict):
                self._json(400, {"errors": [{"message": f"front matter is not a mapping: {meta!r}"}]})
                return
            self._json(200, {"errors": [], "warnings": []})

        def _preupload(self, body: bytes) -> None:
            files = json.loads(body)["files"]
            self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                        "oid": None} for f in files]})

        def _commit(self, repo_type: str, repo_id: str, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next(item["value"] for item in lines if item["key"] == "header")
            added = {}
            for item in lines:
                if item["key"] == "file" and item["value"].get("encoding") == "base64":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] != "header":
                    self._json(400, {"error": f"this loopback Hub takes only base64 files, got {item['key']}"})
                    return
            prefix = hub.url_prefix(repo_type, repo_id)
            tree = {f: data for (r, rev, f), data in hub.files.items() if r == prefix and rev == "main"}
            tree.update(added)
            oid = hashlib.sha1(json.dumps([len(hub.commits), sorted(added)]).encode() + body).hexdigest()
            for name, data in tree.items():
                hub.files[(prefix, oid, name)] = hub.files[(prefix, "main", name)] = data
            hub.commits.append(Commit(repo_type, repo_id, oid, header["summary"], added))
            self._json(200, {"commitUrl": f"{hub.url}/{prefix}/commit/{oid}", "commitOid": oid})

    return Handler


@contextmanager
def serve_hub(files: dict[FileKey, bytes] | None = None) -> Iterator[HubServer]:
    """Serve ``files`` on 127.0.0.1 (random free port) in a background thread; stops on exit."""
    hub = HubServer(url="", files=dict(files or {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
    )
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
