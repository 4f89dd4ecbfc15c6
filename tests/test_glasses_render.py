"""Glasses catalogue (ids, determinism, open-set split, JSON) and the try-on renderer (placement, roll, yaw)."""

import hashlib

import cv2
import numpy as np
import pytest

from models.data.paths import data_root
from models.glasses.catalogue import (CATALOGUE_SIZE, LENS_TYPES, SHAPES, Catalogue, build_catalogue,
                                      is_test_model)
from models.glasses.render import (FaceGeometry, estimate_face_geometry, render_thumbnail, render_tryon,
                                   render_tryon_layers)

# sha256 of the sorted test-model codes of the default catalogue (seed 0): the open-set split must not move.
TEST_MODELS_SHA = "33efc59b4d2270ef02eaf7a5872efef47a32f556e48079ccbe8a75d530a10ba6"

# A synthetic frontal "face": textured background, eyes 50 px apart, nose and mouth below their midpoint.
EYE_L, EYE_R = np.array([100.0, 110.0]), np.array([150.0, 110.0])
POINTS5 = np.array([EYE_L, EYE_R, [125, 140], [105, 165], [145, 165]], np.float32)
IOD = 50.0

HAS_DATA = (data_root() / "annotations" / "lfw_landmarks.npz").is_file()
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"shared face data not found under {data_root()}")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return build_catalogue()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(90, 200, (25, 25, 3), dtype=np.uint8), (250, 250), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)


def _products(catalogue: Catalogue, n: int) -> list:
    """n products of every shape in turn."""
    by_shape = {s: [p for p in catalogue if p.shape == s] for s in SHAPES}
    return [by_shape[SHAPES[i % len(SHAPES)]][i // len(SHAPES)] for i in range(n)]


def _orientation(alpha: np.ndarray) -> float:
    """Principal-axis angle of a mask in degrees (y down, so clockwise on screen is positive)."""
    m = cv2.moments(alpha.astype(np.float32))
    return float(np.degrees(0.5 * np.arctan2(2 * m["mu11"], m["mu20"] - m["mu02"])))


def _rotate_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


# ------------------------------------------------------------------------------------------------- catalogue

def test_catalogue_size_ids_and_variety(catalogue):
    assert len(catalogue) == CATALOGUE_SIZE
    ids = [p.id for p in catalogue]
    assert len(set(ids)) == len(ids) and all(i.startswith("gl-") for i in ids)
    assert len({p.name for p in catalogue}) == len(catalogue)
    assert {p.shape for p in catalogue} == set(SHAPES)
    assert {p.lens_type for p in catalogue} == set(LENS_TYPES)
    assert {p.frame_pattern for p in catalogue} == {"solid", "tortoise", "gradient", "two_tone"}
    # near-duplicates: many models come in several colourways that share the whole frame design
    per_model: dict[str, list] = {}
    for p in catalogue:
        per_model.setdefault(p.model, []).append(p)
    multi = [ps for ps in per_model.values() if len(ps) > 1]
    assert len(multi) > 400
    design = ("shape", "lens_width", "lens_height", "bridge_width", "rim_thickness", "bridge_style")
    for ps in multi[:50]:
        assert len({tuple(getattr(p, k) for k in design) for p in ps}) == 1
        assert len({(p.frame_color_name, p.lens_name) for p in ps}) == len(ps)
    assert catalogue.get(ids[7]) is catalogue.products[7]
    with pytest.raises(KeyError, match="no product"):
        catalogue.get("gl-missing")


def test_catalogue_is_deterministic_and_prefix_stable(catalogue):
    assert build_catalogue() == catalogue
    assert build_catalogue(size=300).products == catalogue.products[:300]
    other = build_catalogue(seed=1, size=300)
    assert not {p.id for p in other} & {p.id for p in catalogue.products[:300]}


def test_open_set_split_is_disjoint_by_model_and_fixed(catalogue):
    train, test = catalogue.split("train"), catalogue.split("test")
    assert len(train) + len(test) == len(catalogue)
    assert not {p.model for p in train} & {p.model for p in test}
    assert 0.2 < len(test) / len(catalogue) < 0.3
    for p in catalogue.products[:200]:
        assert (p.split == "test") == is_test_model(p.model, catalogue.seed)
    # a smaller catalogue puts the same models in the same split
    small = build_catalogue(size=500)
    assert [p.split for p in small] == [p.split for p in catalogue.products[:500]]
    models = sorted({p.model for p in test})
    assert hashlib.sha256("\n".join(models).encode()).hexdigest() == TEST_MODELS_SHA
    with pytest.raises(ValueError, match="split"):
        catalogue.split("validation")


def test_catalogue_json_round_trip(catalogue, tmp_path):
    path = catalogue.save(tmp_path / "catalogue.json")
    loaded = Catalogue.load(path)
    assert loaded == catalogue
    assert isinstance(loaded.products[0].frame_color, tuple)
    path.write_text(path.read_text().replace('"format_version":1', '"format_version":99'))
    with pytest.raises(ValueError, match="format"):
        Catalogue.load(path)


# -------------------------------------------------------------------------------------------------- renderer

def test_render_is_deterministic_for_a_seed(catalogue, face):
    p = catalogue.products[5]
    a, b = render_tryon(face, POINTS5, p, seed=3), render_tryon(face, POINTS5, p, seed=3)
    assert a.dtype == np.uint8 and a.shape == face.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_tryon(face, POINTS5, p, seed=4))
    assert not np.array_equal(a, face)


def test_render_changes_only_the_eye_region(catalogue, face):
    allowed = np.zeros(face.shape[:2], bool)
    mid = (EYE_L + EYE_R) / 2
    allowed[int(mid[1] - 0.85 * IOD):int(mid[1] + 1.05 * IOD), int(mid[0] - 1.75 * IOD):int(mid[0] + 1.75 * IOD)] = True
    for i, p in enumerate(_products(catalogue, 24)):
        out = render_tryon(face, POINTS5, p, seed=i)
        changed = np.abs(out.astype(int) - face.astype(int)).max(2) > 2
        assert changed.sum() > 0.02 * changed.size, p.name
        assert not (changed & ~allowed).any(), (p.name, np.argwhere(changed & ~allowed)[:3])


def test_glasses_are_centred_on_the_eyes(catalogue, face):
    for i, p in enumerate(_products(catalogue, 24)):
        tryon = render_tryon_layers(face, POINTS5, p, seed=i)
        alpha = tryon.alpha
        # both eyes are behind a lens, the mouth corners are not covered
        for eye in (EYE_L, EYE_R):
            assert alpha[int(eye[1]), int(eye[0])] >= 0.09, p.name
        for corner in POINTS5[3:]:
            assert alpha[int(corner[1]), int(corner[0])] == 0, p.name
        ys, xs = np.nonzero(alpha > 0.05)
        w = alpha[ys, xs]
        cx, cy = np.average(xs, weights=w), np.average(ys, weights=w)
        assert abs(cx - 125) < 0.06 * IOD, (p.name, cx)
        assert -0.15 * IOD < cy - 110 < 0.35 * IOD, (p.name, cy)
        left, right = alpha[:, :125].sum(), alpha[:, 125:].sum()
        assert abs(left - right) / (left + right) < 0.12, p.name


@pytest.mark.parametrize("angle", [-14.0, 9.0])
def test_roll_follows_the_eye_line(catalogue, face, angle):
    m = cv2.getRotationMatrix2D((125.0, 125.0), -angle, 1.0)  # cv2 angles are counter-clockwise
    rotated = cv2.warpAffine(face, m, (250, 250), borderMode=cv2.BORDER_REFLECT)
    points = _rotate_points(POINTS5, m).astype(np.float32)
    geo = estimate_face_geometry(points)
    assert abs(geo.roll - angle) < 0.5 and abs(geo.yaw) < 3
    for i, p in enumerate(_products(catalogue, 6)):
        upright = render_tryon_layers(face, POINTS5, p, seed=i).alpha
        tilted = render_tryon_layers(rotated, points, p, seed=i).alpha
        assert abs(_orientation(tilted) - _orientation(upright) - angle) < 1.5, p.name


def test_far_temple_hides_behind_the_head(catalogue, face):
    acetate = [q for q in catalogue if q.material == "acetate"][:2]
    for p in acetate + [q for q in catalogue if q.material == "metal"][:2]:
        sides = {}
        for yaw in (0.0, 30.0, -30.0):
            geo = estimate_face_geometry(POINTS5, pose=(yaw, 0.0, 0.0))
            assert geo.yaw == yaw
            temples = render_tryon_layers(face, geo, p, seed=0).temple_alpha
            sides[yaw] = temples[:, :125].sum(), temples[:, 125:].sum()  # image-left, image-right
        left, right = sides[0.0]
        assert left > 3 and abs(left - right) / (left + right) < 0.15, p.name
        # yaw > 0 turns the face toward the image right: its image-left side (and temple) shows
        assert sides[30.0][0] > 2.2 * sides[30.0][1], (p.name, sides)
        assert sides[-30.0][1] > 2.2 * sides[-30.0][0], (p.name, sides)


def test_thumbnails_are_distinct_and_deterministic(catalogue):
    models = [p.model for p in catalogue]
    model = next(m for m in models if models.count(m) >= 4)
    colourways = [p for p in catalogue if p.model == model][:4]
    shapes = _products(catalogue, 12)
    thumbs = {p.id: render_thumbnail(p, 128) for p in colourways + shapes}
    assert np.array_equal(thumbs[shapes[0].id], render_thumbnail(shapes[0], 128))
    for t in thumbs.values():
        assert t.shape == (128, 128, 3) and t.dtype == np.uint8
        assert (t[:6, :6] == 255).all()  # white shop background
        assert (t < 250).any(axis=2).mean() > 0.02  # something is drawn, even a thin wire frame

    def differing(a, b) -> float:
        return float((np.abs(thumbs[a.id].astype(int) - thumbs[b.id].astype(int)).max(2) > 12).mean())

    # colourways of one design can be near-duplicates (e.g. rimless gold vs rose gold differ only in thin
    # metal parts) but never identical; different designs differ clearly
    for group, least in ((colourways, 0.003), (shapes, 0.03)):
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                assert differing(a, b) > least, (a.name, b.name, differing(a, b))


def test_bad_inputs_are_refused(catalogue, face):
    p = catalogue.products[0]
    with pytest.raises(ValueError, match="shape"):
        render_tryon(face, np.zeros((3, 2)), p, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        render_tryon(face, np.full((5, 2), np.nan), p, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        render_tryon(face.astype(np.float32), POINTS5, p, seed=0)
    assert isinstance(estimate_face_geometry(POINTS5), FaceGeometry)


@needs_data
def test_real_faces_pose_estimate_and_rotation():
    from PIL import Image

    from models.data.faces import annotation_table

    t = annotation_table("lfw")
    idx = np.random.default_rng(1).choice(len(t["file"]), 150, replace=False)
    yaw_err = {"landmarks": [], "five_points": []}
    for i in idx:
        for key in yaw_err:
            geo = estimate_face_geometry(t[key][i].astype(np.float32))
            yaw_err[key].append(abs(geo.yaw - float(t["yaw_roll_pitch"][i][0])))
    assert np.mean(yaw_err["landmarks"]) < 2.5 and np.mean(yaw_err["five_points"]) < 3.5, \
        {k: np.mean(v) for k, v in yaw_err.items()}

    # a real face rotated by 12 degrees: the rendered glasses rotate with it
    catalogue = build_catalogue(size=40)
    i = int(idx[0])
    img = np.asarray(Image.open(t["image_dir"] / t["file"][i]).convert("RGB"))
    lm = t["landmarks"][i].astype(np.float32)
    m = cv2.getRotationMatrix2D((125.0, 125.0), -12.0, 1.0)
    rot_img = cv2.warpAffine(img, m, (250, 250), borderMode=cv2.BORDER_REFLECT)
    rot_lm = _rotate_points(lm, m).astype(np.float32)
    for p in catalogue.products[:5]:
        a = render_tryon_layers(img, lm, p, seed=1)
        b = render_tryon_layers(rot_img, rot_lm, p, seed=1)
        assert abs(b.geometry.roll - a.geometry.roll - 12.0) < 0.5
        assert abs(_orientation(b.alpha) - _orientation(a.alpha) - 12.0) < 2.0, p.name
