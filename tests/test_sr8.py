"""x8 face SR by distillation (issue 6): the DFDNet teacher's layout and dictionary step, the student, the
K-means dictionaries and the training chain teacher -> dictionary -> teacher with dictionary -> students."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from layout import assert_matches_layout, load_manifest

from models.archs.dfdnet_arch import DFDNetTeacher
from models.archs.kd_student_arch import KDStudentSR
from models.data import build_cache
from models.face.align import face_template
from models.training import runner
from models.training.kd_dictionary import build_dictionary, kmeans

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "sr"
MANIFEST = "dfdnet_unetdictface.json"


def _official(key: str) -> bool:
    """Keys the official forward uses: not the VGG aliases/classifier nor the unused to_rgb heads."""
    patterns = load_manifest(MANIFEST)["optional_key_patterns"]
    return not any(fnmatch.fnmatchcase(key, p) for p in patterns)


def test_teacher_has_the_official_layout() -> None:
    net = DFDNetTeacher(ngf=64, image_size=512)
    manifest = assert_matches_layout(net, MANIFEST, select=_official, check_param_count=False)
    unused_heads = sum(int(np.prod(shape)) for key, shape in manifest["state_dict"].items()
                       if key.startswith("to_rgb") and key.endswith(("weight_orig", "bias")))
    ours = sum(p.numel() for k, p in net.named_parameters() if not k.startswith("VggExtract."))
    assert ours == manifest["param_count_excluding_VggExtract"] - unused_heads


def test_official_weights_with_dictionaries_load_strictly() -> None:
    """The official file's used keys plus its .npy dictionaries (as buffers) are exactly our state_dict."""
    manifest = load_manifest(MANIFEST)
    k = 3
    net = DFDNetTeacher(ngf=64, image_size=512, dict_size=k)
    state = {key: torch.zeros(shape) for key, shape in manifest["state_dict"].items() if _official(key)}
    for fname, shape in manifest["dictionaries"]["files"].items():
        part, scale = Path(fname).stem.removesuffix("_center").rsplit("_", 1)
        key = f"dict_{ {'left_eye': 'le', 'right_eye': 're', 'nose': 'no', 'mouth': 'mo'}[part]}_{scale}"
        entries = getattr(net, key)
        assert entries.shape[1] == shape[1]  # the official files' channels at that scale
        state[key] = torch.zeros_like(entries)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_student_is_the_teacher_without_dictionary_parts() -> None:
    teacher = set(DFDNetTeacher(ngf=4, dict_size=2).state_dict())
    student = set(KDStudentSR(ngf=4).state_dict())
    assert student == {k for k in teacher if not k.startswith(("le_", "re_", "no_", "mo_", "dict_"))}
    y, feats = KDStudentSR(ngf=4)(torch.rand(2, 3, 16, 16), return_features=True)
    assert y.shape == (2, 3, 128, 128) and [f.shape[-1] for f in feats] == [16, 32, 64, 128]
    assert KDStudentSR(ngf=4)(torch.rand(1, 3, 17, 23)).shape == (1, 3, 136, 184)  # odd sides: padded, cropped


def test_dictionary_entries_and_landmarks_drive_the_teacher() -> None:
    torch.manual_seed(0)
    net = DFDNetTeacher(ngf=4, dict_size=4).eval()
    for _, buf in net.named_buffers():
        buf.normal_()
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        base = net(lr)
        net.dict_mo_256.mul_(-3).add_(1)
        changed_dict = net(lr)
        moved = net(lr, torch.tensor([[[30.0, 40.0], [90.0, 40.0], [64.0, 70.0], [50.0, 100.0], [78.0, 100.0]]]))
    assert not torch.allclose(base, changed_dict) and not torch.allclose(changed_dict, moved)
    assert base.shape == (1, 3, 128, 128)


def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in truth])
    found = kmeans(x, 3, seed=1)
    assert torch.cdist(truth, found).min(1).values.max() < 0.2


@pytest.fixture(scope="module")
def tiny_chain(tmp_path_factory) -> Path:
    """All five x8 configs at a tiny size (3 steps, batch 4, 8 faces, ngf 2/1, 2 centres)."""
    root = tmp_path_factory.mktemp("sr8")
    build_cache.build("utkface", 128, limit=8, workers=1, cache=root / "cache", progress=False)

    def train(name: str, **extra) -> None:
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        cfg.update(steps=3, batch_size=4, log_every=1, checkpoint_every=3, **extra)
        gen = cfg["networks"]["generator"]
        gen.update(ngf=2 if gen["type"] == "DFDNetTeacher" else 1)
        if "dict_size" in gen and gen["dict_size"]:
            gen["dict_size"] = 2
        cfg["data"].update(limit=8, cache_root=str(root / "cache"))
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        runner.run(root / f"{name}.yaml", device="cpu", workers=0, runs_dir=root / "runs",
                   weights_dir=root / "weights", log=lambda _: None)

    from safetensors.torch import save_file

    train("sr8_teacher_stage1")
    save_file(build_dictionary("sr8_teacher_stage1", faces=8, size=2, weights_dir=root / "weights",
                               cache_root=str(root / "cache"), log=lambda _: None), root / "dictionary.safetensors")
    train("sr8_teacher", dictionary=str(root / "dictionary.safetensors"))
    for name in ("sr8_student", "sr8_student_sskd", "sr8_student_nokd"):
        train(name)
    return root


def _log(root: Path, name: str) -> list[dict]:
    return [json.loads(s) for s in (root / "weights" / name / "train_log.jsonl").read_text().splitlines()]


def test_teacher_stage_two_keeps_encoder_and_exports_dictionaries(tiny_chain: Path) -> None:
    from safetensors.torch import load_file

    stage1 = torch.load(tiny_chain / "runs" / "sr8_teacher_stage1" / "checkpoint.pt", weights_only=True)["params_ema"]
    stage2 = torch.load(tiny_chain / "runs" / "sr8_teacher" / "checkpoint.pt", weights_only=True)["params"]
    enc = [k for k in stage1["generator"] if k.startswith("VggExtract.")]
    # stage 2 starts from stage 1's exported (EMA) weights, and its encoder (the dictionaries' space) stays
    assert all(torch.equal(stage1["generator"][k], stage2["generator"][k]) for k in enc)
    assert not torch.equal(stage1["generator"]["up4.4.weight"], stage2["generator"]["up4.4.weight"])
    exported = load_file(tiny_chain / "weights" / "sr8_teacher" / "model.safetensors")
    dictionary = load_file(tiny_chain / "dictionary.safetensors")
    assert exported["up4.4.weight"].dtype == torch.float16  # export_dtype
    assert all(torch.allclose(exported[k].float(), v, atol=1e-2, rtol=1e-2) for k, v in dictionary.items())
    assert set(_log(tiny_chain, "sr8_teacher")[0]) == {"step", "seconds", "mse"}


def test_students_train_with_their_kd_terms(tiny_chain: Path) -> None:
    assert set(_log(tiny_chain, "sr8_student_nokd")[0]) == {"step", "seconds", "mse", "perceptual"}
    for name in ("sr8_student", "sr8_student_sskd"):
        rows = _log(tiny_chain, name)
        assert set(rows[0]) == {"step", "seconds", "mse", "perceptual", "kd_adversarial", "kd_feature", "kd_output",
                                "d_lsgan"}
        assert all(np.isfinite(v) for row in rows for v in row.values())
    ckpt = torch.load(tiny_chain / "runs" / "sr8_student" / "checkpoint.pt", weights_only=True)
    assert set(ckpt["params"]) == {"generator", "adapters", "discriminators"}
    student = runner.load_exported(tiny_chain / "weights", "sr8_student", torch.device("cpu"))
    assert isinstance(student, KDStudentSR) and student(torch.rand(1, 3, 16, 16)).shape == (1, 3, 128, 128)


def test_output_kd_pulls_the_student_towards_the_teacher(tiny_chain: Path) -> None:
    from models.training.kd_tasks import KDStudentTask

    cfg = yaml.safe_load((tiny_chain / "sr8_student_nokd.yaml").read_text())
    cfg["losses"] = {"mse": 0.0, "perceptual": 0.0, "kd_output": 1.0}
    cfg["optim"]["generator"]["lr"] = 1e-2
    teacher = runner.load_exported(tiny_chain / "weights", "sr8_teacher", torch.device("cpu"))
    torch.manual_seed(0)
    task = KDStudentTask(cfg, torch.device("cpu"), {"teacher": teacher})
    batch = {"lq": torch.rand(2, 3, 16, 16), "clean": torch.rand(2, 3, 128, 128),
             "points": torch.from_numpy(face_template(128)).float().expand(2, 5, 2)}
    distances = [task.train_step(batch)["kd_output"] for _ in range(20)]
    assert distances[-1] < 0.5 * distances[0]
    with torch.no_grad():
        gap = torch.nn.functional.mse_loss(task.nets["generator"](batch["lq"]), teacher(batch["lq"], batch["points"]))
    assert gap.item() == pytest.approx(distances[-1], rel=0.5)
