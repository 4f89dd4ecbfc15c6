"""Weights resolution through a loopback Hub: download, cache, offline, local copies, verification, loading."""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors

from models import hub
from models.cards import ModelCard
from models.hub import WeightsError, get_card, list_cards, load_model, load_state_dict, register_card, resolve_weights
from tests.hub_server import serve_hub

REPO = "rainface-test/tiny"
REV = "1234567890abcdef1234567890abcdef12345678"
SHARED_RETINAFACE = hub.REPO_ROOT / "../shared/weights/retinaface/mobilenet0.25_Final.pth"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fresh HF cache in tmp_path, no inherited Hub settings, and no socket may leave the loopback."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "RAINFACE_WEIGHTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    # Nothing listens on port 9 of the loopback: a test that forgets to start a server fails fast, offline.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    # huggingface_hub reads HF_HUB_OFFLINE once at import; these tests set the mode through the env only.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_DIGESTS", {})

    real_connect = socket.socket.connect

    def loopback_connect(sock: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    real_getaddrinfo = socket.getaddrinfo

    def loopback_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host not in ("127.0.0.1", "::1", "localhost", None):
            raise AssertionError(f"test tried to resolve a network host: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", loopback_connect)
    monkeypatch.setattr(socket, "getaddrinfo", loopback_getaddrinfo)


def tiny_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g)}


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def make_card(data: bytes, filename: str = "tiny.safetensors", **kw: object) -> ModelCard:
    fields: dict = dict(
        name="tiny",
        repo_id=REPO,
        filename=filename,
        revision=REV,
        sha256=hashlib.sha256(data).hexdigest(),
        architecture="3→4 conv (test)",
        config=None,
        license="MIT",
    )
    fields.update(kw)
    return ModelCard(**fields)


def assert_names_model(err: pytest.ExceptionInfo[WeightsError], card: ModelCard) -> None:
    msg = str(err.value)
    assert card.name in msg and card.repo_id in msg and card.revision in msg, msg
    assert "To fix" in msg, msg


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_download_verify_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tensors = tiny_tensors()
    data = save_safetensors(tensors)
    card = make_card(data)
    hashed = []
    real_sha256_file = hub.sha256_file
    monkeypatch.setattr(hub, "sha256_file", lambda p: hashed.append(p) or real_sha256_file(p))
    with serve_hub({(REPO, REV, card.filename): data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)  # set after import: must be read at call time
        path = resolve_weights(card)
        assert path.read_bytes() == data
        assert path.resolve().is_relative_to((tmp_path / "hf_home" / "hub").resolve())
        assert ("GET", f"/{REPO}/resolve/{REV}/{card.filename}") in server.requests
        n_requests = len(server.requests)

        assert_same(load_state_dict(card), tensors)
        # A commit-pinned file already in the cache is neither fetched nor hashed again.
        assert len(server.requests) == n_requests
        assert len(hashed) == 1


def test_offline_cache_hit_after_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tensors = tiny_tensors()
    data = save_safetensors(tensors)
    card = make_card(data)
    cache = tmp_path / "explicit_cache"
    with serve_hub({(REPO, REV, card.filename): data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        resolve_weights(card, cache_dir=cache)
    monkeypatch.setattr(hub, "_DIGESTS", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_weights(card, cache_dir=cache)
    assert path.resolve().is_relative_to(cache.resolve())
    assert_same(load_state_dict(card, cache_dir=cache), tensors)
    assert not (tmp_path / "hf_home").exists()


def test_hash_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    data = save_safetensors(tiny_tensors())
    card = make_card(b"other bytes")
    with serve_hub({(REPO, REV, card.filename): data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(WeightsError, match="sha256") as err:
            load_state_dict(card)
    assert_names_model(err, card)
    assert hashlib.sha256(data).hexdigest() in str(err.value)


@pytest.mark.parametrize(
    "served_key",
    [(REPO, REV, "other.safetensors"), (REPO, "f" * 40, "tiny.safetensors"), ("x/y", REV, "tiny.safetensors")],
    ids=["no_file", "no_revision", "no_repo"],
)
def test_missing_on_hub(monkeypatch: pytest.MonkeyPatch, served_key: tuple[str, str, str]) -> None:
    card = make_card(b"never served")
    with serve_hub({served_key: b"something"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(WeightsError, match="not on") as err:
            resolve_weights(card)
        assert server.requests  # it did ask the (loopback) Hub
    assert_names_model(err, card)


def test_offline_with_empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    data = save_safetensors(tiny_tensors())
    card = make_card(data)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with serve_hub({(REPO, REV, card.filename): data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(WeightsError, match="HF_HUB_OFFLINE") as err:
            resolve_weights(card)
        assert server.requests == []
    assert_names_model(err, card)


@pytest.mark.parametrize("layout", ["per_model", "flat"])
def test_local_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str) -> None:
    tensors = tiny_tensors()
    data = save_safetensors(tensors)
    card = make_card(data)
    folder = tmp_path / "weights" / (card.name if layout == "per_model" else "")
    folder.mkdir(parents=True)
    (folder / card.filename).write_bytes(data)
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    with serve_hub({}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert resolve_weights(card) == folder / card.filename
        assert_same(load_state_dict(card), tensors)
        assert server.requests == []


def test_local_dir_before_shipped_copy_and_mismatch_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = save_safetensors(tiny_tensors())
    shipped = tmp_path / "shipped" / "tiny.safetensors"
    shipped.parent.mkdir()
    shipped.write_bytes(data)
    card = make_card(data, local_path=os.path.relpath(shipped, hub.REPO_ROOT))
    assert resolve_weights(card) == hub.REPO_ROOT / card.local_path

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / card.filename).write_bytes(b"a different file")
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(WeightsError, match="sha256") as err:
        resolve_weights(card)  # the explicit directory comes first, and a bad file there is not skipped
    assert_names_model(err, card)


def test_torch_checkpoint_key_and_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tensors = tiny_tensors()
    ckpt = {"params_ema": {f"module.{k}": v for k, v in tensors.items()}, "params": {}, "iter": 5}
    data = torch_bytes(ckpt)
    card = make_card(data, filename="tiny.pth", state_key="params_ema", strip_prefix="module.")
    assert card.format == "torch"
    with serve_hub({(REPO, REV, card.filename): data}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert_same(load_state_dict(card), tensors)
        # Without the key, the non-tensor entries are reported.
        with pytest.raises(WeightsError, match="state_key"):
            load_state_dict(make_card(data, filename="tiny.pth"))


class _Payload:
    """Unpickling this object would run code (create a directory): weights_only must refuse it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.makedirs, (self.target,))


@pytest.mark.parametrize("obj", ["namespace", "code"])
def test_torch_pickle_with_objects_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, obj: str) -> None:
    sentinel = tmp_path / "code_ran"
    extra = argparse.Namespace(lr=0.1) if obj == "namespace" else _Payload(str(sentinel))
    data = torch_bytes({"conv.weight": torch.ones(2), "extra": extra})
    card = make_card(data, filename="tiny.pth")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / card.filename).write_bytes(data)
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(WeightsError, match=r"weights_only=True") as err:
        load_state_dict(card)
    assert card.name in str(err.value) and card.revision in str(err.value)
    assert ("argparse.Namespace" if obj == "namespace" else "os.makedirs") in str(err.value)
    assert not sentinel.exists()


def test_load_model_strict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from models.registry import ARCH_REGISTRY

    class TinyNet(torch.nn.Module):
        def __init__(self, out_ch: int = 4) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, out_ch, 3)

    monkeypatch.setitem(ARCH_REGISTRY._items, "TinyNetForHubTest", TinyNet)
    tensors = tiny_tensors()
    data = save_safetensors(tensors)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tiny.safetensors").write_bytes(data)
    monkeypatch.setenv("RAINFACE_WEIGHTS_DIR", str(tmp_path / "weights"))

    net = load_model(make_card(data, config={"type": "TinyNetForHubTest", "out_ch": 4}))
    assert not net.training
    assert torch.equal(net.conv.weight, tensors["conv.weight"])

    with pytest.raises(WeightsError, match="do not fit"):
        load_model(make_card(data, config={"type": "TinyNetForHubTest", "out_ch": 5}))
    with pytest.raises(WeightsError, match="no network config"):
        load_model(make_card(data))


def test_cards_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import cards

    monkeypatch.setattr(cards, "_CARDS", dict(cards._CARDS))
    card = make_card(b"x", name="tiny_registered")
    register_card(card)
    register_card(card)  # identical: no-op
    assert get_card("tiny_registered") is card
    assert card in list_cards() and get_card("retinaface_mobile0.25") in list_cards()
    with pytest.raises(KeyError, match="already registered"):
        register_card(make_card(b"y", name="tiny_registered"))
    with pytest.raises(KeyError, match="known:"):
        get_card("no_such_model")
    with pytest.raises(ValueError, match="40-hex"):
        make_card(b"x", revision="main")
    with pytest.raises(ValueError, match="sha256"):
        make_card(b"x", sha256="abc")


def test_sha256_file(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"rainface" * 1000)
    assert hub.sha256_file(f) == hashlib.sha256(b"rainface" * 1000).hexdigest()


@pytest.mark.skipif(not SHARED_RETINAFACE.is_file(), reason=f"RetinaFace weights not present at {SHARED_RETINAFACE}")
def test_real_retinaface_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # must come from ../shared, never the Hub
    card = get_card("retinaface_mobile0.25")
    assert card.format == "torch" and card.config is None and card.license == "MIT"
    assert resolve_weights(card).resolve() == SHARED_RETINAFACE.resolve()
    state = load_state_dict(card)
    assert len(state) == 300
    assert not any(k.startswith("module.") for k in state)
    assert state["body.stage1.0.0.weight"].shape == (8, 3, 3, 3)
    heads = {"body", "fpn", "ssh1", "ssh2", "ssh3", "ClassHead", "BboxHead", "LandmarkHead"}
    assert {re.sub(r"\..*", "", k) for k in state} == heads
