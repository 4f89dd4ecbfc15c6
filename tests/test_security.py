"""Security: the served app (app.launch on 127.0.0.1) gives out no file it does not need (path traversal,
encoded variants, absolute paths, files of the repository, loopback URLs), keeps uploads in Gradio's temporary
folder and refuses oversized ones; bad uploads through the API get a message and the app stays up. The
repository's Python loads weights only through safetensors or torch.load(weights_only=True), and every Hub
download names a pinned revision."""
from __future__ import annotations

import ast
import http.client
import json
import os
import secrets
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import app
from eval.screenshots import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".cache", "outputs", "runs", ".whl", ".gl", "node_modules", "__pycache__", ".venv", "venv"}


class _Negative(app.AlignedFaceRestorer):
    device = torch.device("cpu")

    def _run(self, lq: torch.Tensor, seeds) -> torch.Tensor:
        return 1 - lq


def _stub_restorer(variant: str):
    if variant == "diffusion":
        raise KeyError(variant)
    return _Negative()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served by app.launch on a free loopback port (stand-in restorers: the models are not tested here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app, "rain_restorer", _stub_restorer)
        demo = app.build_demo()
        app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield {"port": port, "url": f"http://127.0.0.1:{port}", "demo": demo,
                   "secret_dir": tmp_path_factory.mktemp("outside")}
        finally:
            demo.close()
            torch.set_num_threads(threads)


def _get(port: int, raw_path: str) -> tuple[int, bytes]:
    """GET exactly `raw_path` (no client-side normalisation of '..' or percent-escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _upload_dir() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def test_path_traversal_and_files_outside_the_app_are_refused(server):
    port = server["port"]
    token = secrets.token_hex(16)
    secret = server["secret_dir"] / "secret.txt"  # a file outside every folder the app serves
    secret.write_text(token)
    passwd = Path("/etc/passwd").read_text().splitlines()[0].encode()
    upload = str(_upload_dir())
    rel_secret = os.path.relpath(secret, upload)
    weights = REPO_ROOT / "weights" / "rain128_dafe" / "model.safetensors"
    F = "/gradio_api/file="
    attempts = [
        F + "../../../../../../../../etc/passwd",
        F + "/etc/passwd",
        F + "//etc/passwd",
        F + "%2Fetc%2Fpasswd",
        F + "..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        F + "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        F + "%252e%252e%252f%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        F + "..\\..\\..\\..\\..\\..\\etc\\passwd",
        F + "file:///etc/passwd",
        F + upload + "/../../../../../../etc/passwd",
        F + upload + "/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        F + str(secret),
        F + upload + "/" + rel_secret,
        F + str(REPO_ROOT / "app.py"),
        F + str(weights),
        F + f"http://127.0.0.1:{port}/config",  # the server fetching from the loopback (SSRF)
        "/file=/etc/passwd",
        "/file=../../../../../../etc/passwd",
        "/gradio_api/file/etc/passwd",
        "/gradio_api/file/../../../../../../etc/passwd",
        "/static/../../../../../../etc/passwd",
        "/assets/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/static/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ]
    app_source = b"def run_rain_tab"
    for path in attempts:
        status, body = _get(port, path)
        leaked = [name for name, marker in (("/etc/passwd", passwd), ("the secret file", token.encode()),
                                            ("app.py", app_source)) if marker in body]
        assert not leaked, f"{path} -> {status} served {leaked}"
        if path.startswith(F) or path.startswith("/file") or path.startswith("/gradio_api/file"):
            assert status in (400, 403, 404), f"{path} -> {status}"
        if path == F + str(weights):
            assert status != 200


def test_what_the_app_needs_is_still_served(server):
    status, body = _get(server["port"], "/config")
    assert status == 200
    config = json.loads(body)
    examples = [c for c in config["components"] if c.get("type") == "dataset"]
    files = [s for c in examples for row in c["props"].get("samples", []) for s in row
             if isinstance(s, dict) and s.get("path")]
    assert files, "no example files in the app's config"
    example = files[0]
    assert Path(example["path"]).resolve().is_relative_to(_upload_dir())  # Gradio copied it to its temp folder
    status, body = _get(server["port"], "/gradio_api/file=" + example["path"])
    assert status == 200 and body[:2] == b"\xff\xd8"  # the JPEG itself


def _upload(url: str, name: str, data: bytes):
    import httpx

    return httpx.post(f"{url}/gradio_api/upload", files={"files": (name, data, "image/jpeg")}, timeout=60)


def test_uploads_stay_in_the_temporary_folder(server):
    data = app.EXAMPLES_DIR.joinpath("Adam_Sandler_0001.jpg").read_bytes()
    name = f"rainface-escape-{secrets.token_hex(4)}.jpg"
    response = _upload(server["url"], "../../../../" + name, data)
    assert response.status_code == 200, response.text
    (stored,) = response.json()
    stored = Path(stored).resolve()
    upload = _upload_dir()
    temp_root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()).resolve()
    assert stored.is_relative_to(upload) and upload.is_relative_to(temp_root)
    assert not stored.is_relative_to(REPO_ROOT)
    assert stored.name == name and stored.read_bytes() == data
    for folder in (upload.parent, upload.parent.parent, REPO_ROOT, REPO_ROOT.parent, Path("/")):
        assert not (folder / name).exists(), folder


def test_oversized_upload_is_refused(server):
    name = f"rainface-big-{secrets.token_hex(4)}.jpg"
    response = _upload(server["url"], name, b"\xff\xd8" + bytes(app.MAX_UPLOAD_BYTES))
    assert response.status_code in (400, 413), response.status_code
    assert not list(_upload_dir().rglob(name))


def test_bad_uploads_through_the_api_get_a_message_and_the_app_stays_up(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    example = app.EXAMPLES_DIR / "Adam_Sandler_0001.jpg"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(example.read_bytes()[:1500])
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    client = Client(server["url"], verbose=False, analytics_enabled=False, download_files=False)
    with pytest.raises(AppError, match="corrupt or truncated"):
        client.predict(handle_file(str(broken)), False, 0, 0.5, api_name="/rain_faces")
    # A file Pillow cannot open at all is refused by gr.Image's own preprocessing, before the tab runs: the
    # message is Gradio's ("Could not preprocess input component"), not the tab's.
    with pytest.raises(AppError):
        client.predict(handle_file(str(text)), False, 0, 0.5, api_name="/rain_faces")
    image, *outs, crops, note = client.predict(handle_file(str(example)), False, 0, 0.5, api_name="/rain_faces")
    assert "1 face(s) found" in note
    served = [image, *[o for o in outs if o], *[c["image"] for c in crops]]
    assert len(served) == 2 + 2 * (len(app.RAIN_METHODS) - 1)
    for item in served:  # every result the app wrote is in Gradio's temporary folder
        path = item["path"] if isinstance(item, dict) else item.path
        assert Path(path).resolve().is_relative_to(_upload_dir()), path


def test_served_app_hands_the_upload_to_the_tab_unconverted(server, tmp_path):
    from gradio_client import Client, handle_file

    from eval.fuzz_inputs import face_photos

    gray16 = tmp_path / "face16.png"
    gray = np.asarray(Image.fromarray(face_photos(1)[0]).convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(gray16)
    client = Client(server["url"], verbose=False, analytics_enabled=False)
    image, *outs, crops, note = client.predict(handle_file(str(gray16)), False, 0, 0.5, api_name="/rain_faces")
    assert "1 face(s) found" in note
    assert Image.open(image).mode == "L"  # given back as grayscale, like the upload
    assert np.abs(np.asarray(Image.open(image), np.int16) - gray).max() <= 1


def test_launch_settings():
    import inspect

    source = inspect.getsource(app.launch)
    assert app.MAX_UPLOAD_BYTES <= 100 * 2**20
    assert '"allowed_paths": []' in source and '"max_file_size": MAX_UPLOAD_BYTES' in source
    assert app.QUEUE["default_concurrency_limit"] >= 1 and app.QUEUE["max_size"] is not None


# --- the repository's code ------------------------------------------------------------------------------------------

def _python_files() -> list[Path]:
    return sorted(p for p in REPO_ROOT.rglob("*.py")
                  if not SKIP_DIRS.intersection(p.relative_to(REPO_ROOT).parts[:-1]))


def _calls(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in names:
                found.append(node)
    return found


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


# The converter of the official BFRffusion checkpoint may unpickle only when its user passes --trust-pickle on
# the command line (a Lightning checkpoint pickles other objects); the app and the evaluation never call it.
PICKLE_OPT_IN = {("models/bfrffusion/convert_official.py", "not trust_pickle")}


def test_weights_are_never_unpickled_without_weights_only():
    files = _python_files()
    assert len(files) > 50 and REPO_ROOT / "models" / "hub.py" in files
    bad, opt_in = [], set()
    for path in files:
        rel = path.relative_to(REPO_ROOT).as_posix()
        source = path.read_text()
        tree = ast.parse(source, rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
                bad.append(f"{rel}:{node.lineno}: `from torch import load` hides torch.load from this check")
        for call in _calls(tree, {"load"}):
            func = call.func
            if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch"):
                continue
            value = _keyword(call, "weights_only")
            if isinstance(value, ast.Constant) and value.value is True:
                continue
            expr = ast.unparse(value) if value is not None else "(missing)"
            if (rel, expr) in PICKLE_OPT_IN:
                opt_in.add((rel, expr))
                continue
            bad.append(f"{rel}:{call.lineno}: torch.load(..., weights_only={expr})")
        for call in _calls(tree, {"load", "loads"}):
            func = call.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("pickle", "dill"):
                bad.append(f"{rel}:{call.lineno}: {func.value.id}.{func.attr}")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
                value = _keyword(call, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    bad.append(f"{rel}:{call.lineno}: np.load(..., allow_pickle={ast.unparse(value)})")
    assert not bad, "\n".join(bad)
    assert opt_in == PICKLE_OPT_IN  # the exception still exists as described (else remove it from the list)


def test_every_hub_download_is_pinned():
    from models.cards import list_cards

    unpinned = []
    for path in _python_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        for call in _calls(tree, {"hf_hub_download", "snapshot_download", "hf_hub_url", "cached_download"}):
            if rel == "tests/hub_server.py" and isinstance(call.func, ast.Name):
                continue  # its docstring example is not code; calls in tests name revisions too
            if _keyword(call, "revision") is None:
                unpinned.append(f"{rel}:{call.lineno}: {ast.unparse(call)[:120]}")
    assert not unpinned, "\n".join(unpinned)
    # The only production download (models/hub.py) passes card.revision, which every card pins to a commit.
    for card in list_cards():
        assert len(card.revision) == 40 and int(card.revision, 16) >= 0, card.name
