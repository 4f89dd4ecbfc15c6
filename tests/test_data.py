"""Data layer: the face-set splits, the image-folder loader and the aligned-face cache."""

import hashlib
import json

import numpy as np
import pytest

from models.data import build_cache
from models.data.faces import VALIDATION_SIZE, annotation_table, load_faces, parse_utkface_name
from models.data.paths import data_root

pytestmark = pytest.mark.skipif(
    not (data_root() / "annotations" / "utkface_landmarks.npz").is_file(),
    reason=f"shared face data not found under {data_root()} (set RAINFACE_DATA)")

# sha256 of the sorted UTKFace validation file names: the split must not move between machines or numpy versions.
VALIDATION_SHA = "08df81733d9113f5ec92a7ed74e4307c233874f8acb5ac752b1f00c05c82f746"
LIMIT = 20


def test_utkface_split_is_fixed_and_disjoint():
    a, b = annotation_table("utkface"), annotation_table("utkface")
    assert (a["split"] == b["split"]).all() and (a["file"] == b["file"]).all()
    train = set(a["file"][a["split"] == "train"])
    val = set(a["file"][a["split"] == "validation"])
    assert len(val) == VALIDATION_SIZE and len(train) == 23693 - VALIDATION_SIZE
    assert not train & val
    assert hashlib.sha256("\n".join(sorted(val)).encode()).hexdigest() == VALIDATION_SHA
    assert (a["qc"] >= 0).all()


def test_load_faces_columns_and_dtypes():
    val = load_faces("utkface", "validation")
    assert len(val) == VALIDATION_SIZE
    assert val["file"] == load_faces("utkface", "validation", landmarks=False)["file"]
    row = val.with_format("numpy")[0]
    assert row["five_points"].shape == (5, 2) and row["five_points"].dtype == np.float32
    assert row["landmarks"].shape == (140, 2) and row["landmarks"].dtype == np.float32
    assert row["yaw_roll_pitch"].shape == (3,)
    first = val[0]
    assert first["image"].size == (200, 200) and first["image"].mode == "RGB"
    assert first["parsing"].size == (200, 200) and first["parsing"].mode == "L"
    assert (first["age"], first["gender"], first["race"]) == parse_utkface_name(first["file"])

    lfw = load_faces("lfw", "test", landmarks=False)
    assert len(lfw) == 5749 and "landmarks" not in lfw.column_names and "age" not in lfw.column_names
    assert lfw[0]["image"].size == (250, 250)
    with pytest.raises(ValueError, match="splits"):
        load_faces("lfw", "train")


def test_parse_utkface_name():
    assert parse_utkface_name("26_1_3_20170117153843014.jpg.chip.jpg") == (26, 1, 3)
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") == (39, 1, -1)


def test_load_image_folder(tmp_path, monkeypatch):
    import datasets
    from PIL import Image

    from models.data.image_folder import load_image_folder

    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        Image.new("RGB", (8, 6)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_image_folder(tmp_path)
    assert ds["file"] == ["b.png", "sub/a.jpg"] and ds[1]["image"].size == (8, 6)
    assert load_image_folder(tmp_path, split="sub")["file"] == ["a.jpg"]

    hub = datasets.Dataset.from_dict({"img": [str(tmp_path / "b.png")], "file_name": ["x.png"]},
                                     features=datasets.Features({"img": datasets.Image(),
                                                                 "file_name": datasets.Value("string")}))
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, split, revision: calls.append((repo, revision)) or hub)
    ds = load_image_folder("someone/faces@0123abc", split="test")
    assert ds.column_names == ["file", "image"] and ds["file"] == ["x.png"]
    assert calls == [("someone/faces", "0123abc")]
    with pytest.raises(ValueError, match="pinned to a revision"):
        load_image_folder("someone/faces", split="test")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build_cache, "CHUNK", 16)  # several chunks, so two workers and the write order are exercised
        build_cache.main(["--sets", "utkface", "lfw", "--sizes", "128", "--limit", str(LIMIT),
                          "--workers", "2", "--cache-root", str(root), "--no-progress"])
    return root


def _index(root, name="utkface", size=128):
    return json.loads((root / name / str(size) / "index.json").read_text())


def test_cache_layout(cache):
    for name, n in (("utkface", 2 * LIMIT), ("lfw", LIMIT)):
        folder = cache / name / "128"
        index = _index(cache, name)
        assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "index.json", "parsing.npy"]
        images, parsing = np.load(folder / "images.npy"), np.load(folder / "parsing.npy")
        assert images.shape == (n, 128, 128, 3) and images.dtype == np.uint8
        assert parsing.shape == (n, 128, 128) and parsing.dtype == np.uint8 and parsing.max() <= 18
        assert index["count"] == n and len(index["files"]) == len(index["affine"]) == n
        assert index["source"] == "annotations" and index["border_mode"] == "reflect"
    assert _index(cache, "utkface")["split"].count("validation") == LIMIT


def test_cache_matches_affine_and_template(cache):
    import cv2

    from models.face.align import face_template, warp_face

    index = _index(cache)
    table = annotation_table("utkface")
    rows = np.searchsorted(table["file"], index["files"])
    points = table["five_points"][rows].astype(np.float64)
    affine = np.asarray(index["affine"])
    aligned = np.einsum("nij,nkj->nki", affine[:, :, :2], points) + affine[:, None, :, 2]
    eye_err = np.linalg.norm(aligned[:, :2] - face_template(128)[:2], axis=-1)
    # A 5-point similarity fit cannot put both eyes of every face on the template; on average it must.
    assert np.median(eye_err) < 2.0 and eye_err.max() < 6.0

    images = np.load(cache / "utkface" / "128" / "images.npy")
    parsing = np.load(cache / "utkface" / "128" / "parsing.npy")
    for i in (0, 17, len(rows) - 1):  # rows from different chunks: each image belongs to its index row
        rgb = cv2.imread(str(table["image_dir"] / index["files"][i]))[:, :, ::-1]
        assert np.array_equal(images[i], warp_face(rgb, affine[i], 128, border_mode="reflect"))
        valid = build_cache.valid_mask(affine[i], index["image_hw"], 128)
        assert abs((1 - valid.mean()) - index["out_of_image"][i]) < 1e-4
        assert 0.1 < index["out_of_image"][i] < 0.9  # tight 200 px crops: the template reaches past them
        assert (parsing[i][valid == 0] == 0).all() and (parsing[i][valid == 1] > 0).any()


def test_rebuild_skipped_and_recipe_change_rebuilds(cache, tmp_path):
    before = (cache / "lfw" / "128" / "images.npy").stat().st_mtime_ns
    out, built = build_cache.build("lfw", 128, limit=LIMIT, cache=cache, progress=False)
    assert not built and (out / "images.npy").stat().st_mtime_ns == before

    root = tmp_path / "c"
    build_cache.build("lfw", 128, limit=3, cache=root, progress=False)
    hash_reflect = _index(root, "lfw")["recipe_hash"]
    _, built = build_cache.build("lfw", 128, limit=3, border="constant", cache=root, progress=False)
    assert built and _index(root, "lfw")["recipe_hash"] != hash_reflect


def test_interrupted_build_resumes(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(build_cache, "CHUNK", 8)
    real, calls = build_cache._align_chunk, []

    def flaky(job):
        calls.append(job[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(build_cache, "_align_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache.build("lfw", 128, limit=LIMIT, workers=1, cache=tmp_path, progress=False)
    partial = tmp_path / "lfw" / "128.partial"
    assert json.loads((partial / "progress.json").read_text())["done"] == 16
    assert not (tmp_path / "lfw" / "128").exists()

    calls.clear()
    build_cache.build("lfw", 128, limit=LIMIT, workers=1, cache=tmp_path, progress=False)
    assert calls == [16] and not partial.exists()
    fresh = np.load(cache / "lfw" / "128" / "images.npy")
    assert np.array_equal(np.load(tmp_path / "lfw" / "128" / "images.npy"), fresh)
    assert _index(tmp_path, "lfw")["affine"] == _index(cache, "lfw")["affine"]


def test_aligned_faces_reads_cache(cache):
    import torch

    from models.data.aligned import AlignedFaces

    val = AlignedFaces("utkface", 128, "validation", with_parsing=True, with_valid=True, root=cache)
    index = _index(cache)
    assert len(val) == LIMIT and set(val.files) <= {f for f, s in zip(index["files"], index["split"])
                                                    if s == "validation"}
    item = val[3]
    assert item["image"].shape == (3, 128, 128) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0 and item["image"].std() > 0.05
    assert item["parsing"].shape == (128, 128) and item["parsing"].dtype == torch.int64
    assert item["valid"].shape == (1, 128, 128) and item["file"] == val.files[3]
    batch = next(iter(torch.utils.data.DataLoader(val, batch_size=4)))
    assert batch["image"].shape == (4, 3, 128, 128) and len(batch["file"]) == 4
    assert len(AlignedFaces("lfw", 128, "test", root=cache)) == LIMIT

    with pytest.raises(FileNotFoundError, match="models.data.build_cache --sets lfw --sizes 256"):
        AlignedFaces("lfw", 256, "test", root=cache)
