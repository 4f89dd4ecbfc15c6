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
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

FileKey = tuple[str, str, str]  # (repo_id, revision, filename)


@dataclass
class HubServer:
    """A running server. ``files`` may be changed while it runs; ``requests`` logs (method, path)."""

    url: str
    files: dict[FileKey, bytes]
    requests: list[tuple[str, str]] = field(default_factory=list)


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
