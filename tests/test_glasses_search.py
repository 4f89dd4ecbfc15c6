"""Glasses search: band geometry, training jitter, faiss indexes, registration, refusal, the eval task, weights I/O.

Networks here are untrained (random weights): the tests check the mechanics, never retrieval quality.
"""

import json

import cv2
import numpy as np
import pytest
import torch

from models.data.paths import data_root
from models.glasses.crop import BAND_H, BAND_W, IOD_PX, band_affine, crop_band, eyes_in_photo, nominal_eyes
from models.glasses.index import build_index, recall_at_k, search
from models.registry import build_network

HAS_DATA = (data_root() / "annotations" / "lfw_landmarks.npz").is_file()
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"shared face data not found under {data_root()}")


def _has_detector() -> bool:
    try:
        from models.hub import resolve_weights

        resolve_weights("retinaface_mobile0.25")
        return True
    except Exception:
        return False


needs_detector = pytest.mark.skipif(not HAS_DATA or not _has_detector(),
                                    reason="face data or RetinaFace weights missing")


def _textured(h: int = 200, w: int = 260, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network({"type": "GlassesEmbeddingNet", "widths": [8, 8, 16, 16], "reduced": 8}).eval()


# ---------------------------------------------------------------------------------------------- crop geometry

def test_band_puts_the_eyes_at_their_nominal_places_for_any_roll_and_scale():
    for roll, iod in ((0.0, 40.0), (17.0, 63.0), (-25.0, 21.0)):
        a = np.radians(roll)
        mid = np.array([130.0, 95.0])
        d = np.array([np.cos(a), np.sin(a)]) * iod / 2
        eyes = np.stack([mid - d, mid + d])
        aff = band_affine(eyes)
        mapped = eyes @ aff[:, :2].T + aff[:, 2]
        np.testing.assert_allclose(mapped, nominal_eyes(), atol=1e-9)
        assert np.sqrt(abs(np.linalg.det(aff[:, :2]))) == pytest.approx(IOD_PX / iod)
        np.testing.assert_allclose(eyes_in_photo(aff, np.zeros(4)), eyes, atol=1e-9)
        # a context band has the same scale and centre
        ctx = band_affine(eyes, 1.5)
        np.testing.assert_allclose(eyes @ ctx[:, :2].T + ctx[:, 2], nominal_eyes(1.5), atol=1e-9)


def test_rotating_the_photo_does_not_rotate_the_band():
    img = _textured()
    eyes = np.array([[105.0, 90.0], [155.0, 92.0]])
    band = crop_band(img, eyes).astype(float)
    assert band.shape == (BAND_H, BAND_W, 3)
    m = cv2.getRotationMatrix2D((130.0, 100.0), 20.0, 1.0)
    rotated = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC)
    band_r = crop_band(rotated, eyes @ m[:, :2].T + m[:, 2]).astype(float)
    inner = (slice(8, -8), slice(16, -16))  # away from the rotated photo's borders
    assert np.abs(band_r[inner] - band[inner]).mean() < 6.0
    shifted_eyes = eyes + [0.0, 12.0]  # a wrong crop differs clearly
    assert np.abs(crop_band(img, shifted_eyes).astype(float)[inner] - band[inner]).mean() > 15.0


def test_big_faces_are_area_shrunk_without_aliasing():
    stripes = np.zeros((1200, 1200, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing would leave strong patterns
    band = crop_band(stripes, np.array([[400.0, 600.0], [800.0, 600.0]]))
    assert abs(band.mean() - 127.5) < 6 and band.std() < 12


def test_embed_face_keeps_the_start_whose_band_shows_glasses_most_surely():
    from models.glasses.embedder import GlassesEmbedder

    rng = np.random.default_rng(0)
    photo = (rng.random((160, 220, 3)) * 255).astype(np.uint8)
    points = np.array([[80.0, 70.0], [130.0, 74.0], [105, 100], [85, 125], [125, 127]])
    net = _net(3)
    multi = GlassesEmbedder(net, refine=2, start_scales=(0.8, 1.25)).embed_face(photo, points)
    mid, half = points[:2].mean(0), (points[1] - points[0]) / 2
    singles = [GlassesEmbedder(net, refine=2, start_scales=()).embed_face(
        photo, np.stack([mid - s * half, mid + s * half])) for s in (1.0, 0.8, 1.25)]
    best = max(singles, key=lambda f: f.presence)
    assert multi.presence == pytest.approx(best.presence, abs=1e-5)
    np.testing.assert_allclose(multi.embedding, best.embedding, atol=1e-5)
    np.testing.assert_allclose(multi.eyes, best.eyes, atol=1e-6)
    assert len({round(f.presence, 6) for f in singles}) == 3  # the starts really lead to different bands


def test_a_correction_that_collapses_the_eyes_is_not_taken():
    from models.glasses.embedder import GlassesEmbedder

    class Collapsing(torch.nn.Module):  # the eye head moves both eyes onto their midpoint
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> dict:
            out = dict(self.net(x))
            out["eyes"] = torch.tensor([0.5, 0.0, -0.5, 0.0]).expand(len(x), 4)
            return out

    photo = _textured()
    eyes = np.array([[105.0, 90.0], [155.0, 92.0]])
    face = GlassesEmbedder(Collapsing(_net(3)), refine=5, start_scales=()).embed_face(photo, eyes)
    np.testing.assert_allclose(face.eyes, eyes, atol=1e-9)
    np.testing.assert_allclose(face.band, crop_band(photo, eyes))


def test_a_detection_too_small_to_crop_is_no_face_not_an_error():
    from models.face.detect import Detection
    from models.glasses.embedder import GlassesEmbedder
    from models.glasses.search import embed_glasses_face

    # Eyes 1.1 px apart: the 0.87 start put them under a pixel apart, and cropping that raised a ValueError.
    tiny = np.array([[100.0, 80.0], [101.1, 80.0], [100.5, 81], [100.2, 82], [100.9, 82]])

    class Detector:
        def detect(self, rgb):
            return [Detection(box=np.array([99, 79, 102, 83], np.float32), score=0.9, points5=tiny.astype(np.float32))]

    embedder = GlassesEmbedder(_net(3), refine=1)
    photo = _textured()
    assert embedder.embed_face(photo, tiny) is None and embedder.embed_face_widely(photo, tiny) is None
    assert embed_glasses_face(embedder, Detector(), photo) is None
    assert embed_glasses_face(embedder, Detector(), photo, (0.5, 0.9)) is None


def test_training_jitter_targets_point_at_the_true_eyes():
    from models.glasses.train import cut_bands, jitter_affines

    ctx_eyes = nominal_eyes(1.6)
    jitter = np.array([[0.0, 0.0, 0.0, 0.0], [0.1, -0.05, 0.2, 7.0], [-0.2, 0.1, -0.15, -9.0]])
    affines, targets = jitter_affines(jitter, 1.6)
    np.testing.assert_allclose(targets[0], 0, atol=1e-9)
    for aff, t in zip(affines, targets):
        back = eyes_in_photo(aff, t)  # "photo" = the context band here
        np.testing.assert_allclose(back, ctx_eyes, atol=1e-6)
    # zero jitter cuts the centre of the context band: the same band as crop_band at context 1
    img = _textured(seed=3)
    eyes = np.array([[110.0, 100.0], [150.0, 100.0]])
    ctx = torch.from_numpy(crop_band(img, eyes, 1.6)).permute(2, 0, 1)[None].float() / 255
    cut = cut_bands(ctx, affines[:1])[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(cut - crop_band(img, eyes).astype(float))[4:-4, 4:-4].mean() < 2.0


def test_a_later_stage_starts_from_the_earlier_runs_ema_network_and_proxies(tmp_path):
    from models.glasses.train import CosFace, init_from_runs
    from models.training.runner import TrainingError

    ema, live, head = _net(1), _net(2), CosFace(5, 128, 20.0, 0.2)
    run = tmp_path / "stage1"
    run.mkdir()
    ckpt = {"step": 10, "finished": False, "params": {"embedder": live.state_dict(), "proxies": head.state_dict()},
            "params_ema": {"embedder": ema.state_dict()}}
    torch.save(ckpt, run / "checkpoint.pt")
    init = [{"net": "embedder", "run": "stage1", "weights": "params_ema"}, {"net": "proxies", "run": "stage1"}]
    net, fresh_head = _net(3), CosFace(5, 128, 20.0, 0.2)
    with pytest.raises(TrainingError, match="stopped at step 10"):
        init_from_runs(net, fresh_head, init, tmp_path)
    torch.save({**ckpt, "finished": True}, run / "checkpoint.pt")
    init_from_runs(net, fresh_head, init, tmp_path)
    for k, v in ema.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    assert torch.equal(fresh_head.proxies, head.proxies)
    with pytest.raises(RuntimeError, match="size mismatch"):  # proxies of another product count
        init_from_runs(net, CosFace(6, 128, 20.0, 0.2), init, tmp_path)


# ------------------------------------------------------------------------------------------------- indexes

def test_exact_and_approximate_indexes_agree_on_a_small_set():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 32))
    x = (centres[rng.integers(40, size=3000)] + 0.4 * rng.standard_normal((3000, 32))).astype(np.float32)
    q = x[:100] + 0.05 * rng.standard_normal((100, 32)).astype(np.float32)
    exact = build_index(x, "exact")
    scores, ids = search(exact, q, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_array_equal(ids[:, 0], np.argmax(qn @ xn.T, axis=1))
    assert recall_at_k(search(build_index(x, "hnsw", m=16, ef_search=64), q, 10)[1], ids, 10) > 0.9
    assert recall_at_k(search(build_index(x, "ivf", nlist=16, nprobe=16), q, 10)[1], ids, 10) > 0.999
    assert recall_at_k(search(build_index(x, "ivf", nlist=64, nprobe=1), q, 10)[1], ids, 10) < 1.0
    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3, 1]]), 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="zero length"):
        build_index(np.zeros((3, 4)), "exact")


# ------------------------------------------------------------------------------------------- registration

def test_registration_is_the_normalised_mean_of_reference_embeddings():
    from models.glasses.register import product_embedding

    e = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(product_embedding(e), [2 ** -0.5, 2 ** -0.5, 0.0], atol=1e-7)


@needs_data
def test_presence_thresholds_refuse_a_quantile_of_located_glasses_and_let_no_refused_face_without_through():
    from models.glasses.register import presence_thresholds

    located = np.stack([np.linspace(0.5, 1.0, 101), np.ones(101), np.zeros(101)], 1)
    mislocated = np.array([[0.01, 0.0, 0.0], [0.02, 0.0, 0.0]])  # not located: not counted in the quantile
    none = np.array([[0.1, 1.0, 0.97], [0.3, 1.0, 0.99], [0.95, 1.0, 0.999], [0.2, 1.0, 0.5]])
    first, second = presence_thresholds(np.concatenate([located, mislocated]), none, 0.02)
    assert first == pytest.approx(0.51)
    assert 0.99 < second < 0.9901  # above the refused faces' best second look; 0.999 was accepted at once
    assert presence_thresholds(located, none[:1] * [1, 1, 0.1], 0.02)[1] == first  # never below the first


def test_register_products_embeds_renders_on_the_reference_faces():
    from models.glasses.catalogue import build_catalogue
    from models.glasses.embedder import GlassesEmbedder
    from models.glasses.register import (augmented_reference_rows, product_embedding, reference_bands,
                                         reference_rows, register_products)

    products = list(build_catalogue(size=3).products)
    rows, augmented = reference_rows(2), augmented_reference_rows(1)
    embedder = GlassesEmbedder(_net())
    registered = register_products(embedder, products, rows, augmented, workers=1)
    bands = reference_bands(products, rows, augmented)
    assert bands.shape == (3, 3, BAND_H, BAND_W, 3)
    for i in range(3):
        expected = product_embedding(embedder.embed_bands(bands[i]))
        np.testing.assert_allclose(registered[i], expected, atol=1e-5)
    np.testing.assert_array_equal(bands[:, :2], reference_bands(products, rows))  # clean ones come first
    assert len(set(reference_rows(6).tolist())) == 6
    assert not set(augmented_reference_rows(6).tolist()) & set(reference_rows(6).tolist())


# ---------------------------------------------------------------------------------- search and refusal

@pytest.fixture(scope="module")
def tiny_search():
    from models.glasses.catalogue import build_catalogue
    from models.glasses.embedder import GlassesEmbedder
    from models.glasses.search import GlassesSearch

    products = list(build_catalogue().products)
    emb = np.random.default_rng(0).standard_normal((len(products), 128)).astype(np.float32)
    return GlassesSearch(GlassesEmbedder(_net()), emb, products, presence_threshold=0.0)


def test_the_candidate_face_most_likely_wearing_glasses_is_searched():
    from models.face.detect import Detection
    from models.glasses.embedder import FaceEmbedding
    from models.glasses.search import CANDIDATE_FACES, embed_glasses_face, locate_faces

    scores = [0.95, 0.6, 0.99, 0.7, 0.8, 0.55]  # face i has its points at x = i
    presence = [0.2, 0.99, 0.3, 0.9, 0.4, 0.1]

    class Detector:
        def __init__(self, n: int) -> None:
            self.n = n

        def detect(self, rgb):  # largest first, as FaceDetector returns them
            return [Detection(box=np.array([0, 0, 60 - i, 60 - i], np.float32), score=scores[i],
                              points5=np.full((5, 2), float(i), np.float32)) for i in range(self.n)]

    class Embedder:
        def embed_face(self, rgb, points):
            i = int(points[0, 0])
            return FaceEmbedding(embedding=np.eye(3, dtype=np.float32)[i % 3], presence=presence[i],
                                 eyes=points[:2], band=np.zeros((48, 128, 3), np.uint8))

    photo = np.full((64, 64, 3), 100, np.uint8)
    tried = [int(p[0, 0]) for p in locate_faces(Detector(6), photo)]
    assert tried == [2, 0, 4, 3] and len(tried) == CANDIDATE_FACES  # the most confident four
    face, points = embed_glasses_face(Embedder(), Detector(6), photo)
    assert int(points[0, 0]) == 3 and face.presence == 0.9  # face 1 (0.99) was not among the four
    assert int(embed_glasses_face(Embedder(), Detector(2), photo)[1][0, 0]) == 1
    assert embed_glasses_face(Embedder(), Detector(0), photo) is None


def test_a_face_the_first_look_would_refuse_gets_a_second_look_from_wider_starts():
    from models.face.detect import Detection
    from models.glasses.embedder import FaceEmbedding
    from models.glasses.search import embed_glasses_face

    class Detector:  # two faces, points at x = 0 and x = 1
        def detect(self, rgb):
            return [Detection(box=np.array([0, 0, 60, 60], np.float32), score=0.9 - i / 10,
                              points5=np.full((5, 2), float(i), np.float32)) for i in range(2)]

    class Embedder:
        def __init__(self, first: list[float], wide: list[float | None]) -> None:
            self.first, self.wide, self.wide_calls = first, wide, 0

        def _face(self, presence: float, tag: float) -> FaceEmbedding:
            return FaceEmbedding(embedding=np.ones(3, np.float32), presence=presence,
                                 eyes=np.full((2, 2), tag), band=np.zeros((48, 128, 3), np.uint8))

        def embed_face(self, rgb, points):
            return self._face(self.first[int(points[0, 0])], 0.0)

        def embed_face_widely(self, rgb, points):
            self.wide_calls += 1
            p = self.wide[int(points[0, 0])]
            return None if p is None else self._face(p, 1.0)

        def scan(self, rgb):
            return None

    photo = np.full((64, 64, 3), 100, np.uint8)
    look = (0.8, 0.95)
    sure = Embedder([0.3, 0.85], [0.99, 0.99])  # the first look accepts: no second look
    face, _ = embed_glasses_face(sure, Detector(), photo, look)
    assert face.presence == 0.85 and sure.wide_calls == 0
    found = Embedder([0.3, 0.5], [None, 0.97])  # the second look finds glasses on face 1
    face, points = embed_glasses_face(found, Detector(), photo, look)
    assert face.presence == 0.97 and face.eyes[0, 0] == 1.0 and int(points[0, 0]) == 1 and found.wide_calls == 2
    unsure = Embedder([0.3, 0.5], [0.9, 0.94])  # not sure enough: the first look's face is kept (and refused)
    face, points = embed_glasses_face(unsure, Detector(), photo, look)
    assert face.presence == 0.5 and face.eyes[0, 0] == 0.0 and int(points[0, 0]) == 1
    face, _ = embed_glasses_face(Embedder([0.3, 0.5], [0.99, 0.99]), Detector(), photo)  # no second look asked
    assert face.presence == 0.5


def test_the_second_look_takes_the_scan_when_it_is_surest_and_places_the_face_by_its_eyes():
    from models.face.detect import Detection
    from models.glasses.embedder import FaceEmbedding
    from models.glasses.search import embed_glasses_face, points_of_eyes

    class Detector:  # the detector boxed something else than the face wearing glasses
        def detect(self, rgb):
            return [Detection(box=np.array([0, 0, 20, 20], np.float32), score=0.9,
                              points5=np.full((5, 2), 5.0, np.float32))]

    scanned_eyes = np.array([[150.0, 100.0], [180.0, 104.0]])

    class Embedder:
        def __init__(self, scanned: float) -> None:
            self.scanned = scanned

        def _face(self, presence: float, eyes: np.ndarray) -> FaceEmbedding:
            return FaceEmbedding(embedding=np.ones(3, np.float32), presence=presence, eyes=eyes,
                                 band=np.zeros((48, 128, 3), np.uint8))

        def embed_face(self, rgb, points):
            return self._face(0.2, points[:2])

        def embed_face_widely(self, rgb, points):
            return self._face(0.6, points[:2])

        def scan(self, rgb):
            return self._face(self.scanned, scanned_eyes)

    photo = np.full((200, 260, 3), 100, np.uint8)
    face, points = embed_glasses_face(Embedder(0.99), Detector(), photo, (0.8, 0.95))
    assert face.presence == 0.99
    np.testing.assert_allclose(points, points_of_eyes(scanned_eyes))
    face, points = embed_glasses_face(Embedder(0.9), Detector(), photo, (0.8, 0.95))  # not sure enough
    assert face.presence == 0.2 and points[0, 0] == 5.0

    class NoFace:
        def detect(self, rgb):
            return []

    face, points = embed_glasses_face(Embedder(0.99), NoFace(), photo, (0.8, 0.95))  # the scan finds a face
    assert face.presence == 0.99 and np.allclose(points[:2], scanned_eyes)
    assert embed_glasses_face(Embedder(0.9), NoFace(), photo, (0.8, 0.95)) is None
    assert embed_glasses_face(Embedder(0.99), NoFace(), photo) is None  # no second look asked


def test_points_of_eyes_put_the_template_face_under_the_eyes():
    from models.glasses.search import points_of_eyes

    eyes = np.array([[100.0, 80.0], [140.0, 80.0]])
    points = points_of_eyes(eyes)
    np.testing.assert_allclose(points[:2], eyes, atol=1e-9)
    assert 100 < points[2, 0] < 140 and 95 < points[2, 1] < 110  # the nose below the eye midpoint
    assert points[3, 1] > points[2, 1] and points[3, 0] < points[4, 0]  # mouth corners under it, left first
    rolled = points_of_eyes(np.array([[100.0, 80.0], [100.0, 120.0]]))  # a face lying on its side
    assert rolled[2, 0] < 100


def test_the_scan_grid_covers_the_photo_at_growing_eye_distances():
    from models.glasses.embedder import SCAN_EYE_DISTANCE, SCAN_RATIO, SCAN_STRIDE, scan_grid

    grid = scan_grid(100, 130)
    distances = sorted({round(float(e[1, 0] - e[0, 0]), 6) for e in grid})
    expected = SCAN_EYE_DISTANCE * SCAN_RATIO ** np.arange(len(distances))
    np.testing.assert_allclose(distances, expected)
    assert expected[-1] <= 50 < expected[-1] * SCAN_RATIO  # up to half the shorter side
    assert all(e[0, 1] == e[1, 1] for e in grid)  # level bands
    smallest = np.array([e.mean(0) for e in grid if e[1, 0] - e[0, 0] == SCAN_EYE_DISTANCE])
    step = SCAN_STRIDE * SCAN_EYE_DISTANCE
    assert smallest[:, 0].min() == step / 2 and smallest[:, 0].max() > 130 - step
    assert len(smallest) == len(np.arange(step / 2, 100, step)) * len(np.arange(step / 2, 130, step))
    assert scan_grid(30, 30) == []


def test_the_scan_finds_the_glasses_where_the_network_sees_them():
    from models.glasses.crop import BAND_H, BAND_W
    from models.glasses.embedder import GlassesEmbedder

    class BrightCentre(torch.nn.Module):  # "glasses" = a bright eye line in the band's centre, dark around it
        def forward(self, x: torch.Tensor) -> dict:
            centre = x[:, :, 16:24, 34:94].mean((1, 2, 3))
            rest = (x.sum((1, 2, 3)) - x[:, :, 16:24, 34:94].sum((1, 2, 3))) / (x[0].numel() - 3 * 8 * 60)
            n = len(x)
            return {"embedding": torch.nn.functional.normalize(torch.ones(n, 4), dim=1),
                    "presence": 20 * (centre - rest) - 5, "eyes": torch.zeros(n, 4)}

    photo = np.zeros((200, 260, 3), np.uint8)
    photo[96:104, 150:210] = 255  # a bar 60 px long around (179.5, 99.5)
    embedder = GlassesEmbedder(BrightCentre(), refine=1, start_scales=())
    face = embedder.scan(photo)
    assert face is not None and face.presence > 0.9
    assert np.linalg.norm(face.eyes.mean(0) - [179.5, 99.5]) < 12
    assert face.band.shape == (BAND_H, BAND_W, 3)
    big = cv2.resize(photo, (2600, 2000), interpolation=cv2.INTER_NEAREST)  # scanned shrunk, corrected at full size
    face = embedder.scan(big)
    assert face.presence > 0.9 and np.linalg.norm(face.eyes.mean(0) - [1799.5, 999.5]) < 120
    assert GlassesEmbedder(BrightCentre()).scan(np.zeros((30, 30, 3), np.uint8)) is None


def test_second_look_starts_scale_and_move_the_detected_eyes():
    from models.glasses.embedder import eye_starts

    points = np.array([[100.0, 80.0], [140.0, 80.0], [120, 100], [105, 120], [135, 120]])
    assert len(eye_starts(points, (1.0, 0.87, 1.15))) == 3
    np.testing.assert_allclose(eye_starts(points, (1.0,))[0], points[:2])
    starts = eye_starts(points, (0.5, 2.0), 0.25)
    assert len(starts) == 10
    distances = [np.linalg.norm(e[1] - e[0]) for e in starts]
    np.testing.assert_allclose(distances, [20.0] * 5 + [80.0] * 5)
    mids = np.array([e.mean(0) for e in starts])
    np.testing.assert_allclose(mids[:5], [[120, 80], [125, 80], [115, 80], [120, 85], [120, 75]])
    np.testing.assert_allclose(mids[5:], [[120, 80], [140, 80], [100, 80], [120, 100], [120, 60]])


def test_a_photo_without_a_face_is_searched_again_padded_then_enlarged(monkeypatch):
    from models.face.detect import Detection, FaceDetector

    sizes = []

    def fake(self, rgb):  # a face (at x = y = 39.5) only in images at least `min_width` px wide
        sizes.append(rgb.shape[:2])
        if rgb.shape[1] < min_width:
            return []
        return [Detection(box=np.array([0, 0, 80, 80], np.float32), score=0.9,
                          points5=np.full((5, 2), 39.5, np.float32))]

    monkeypatch.setattr(FaceDetector, "_detect_textured", fake)
    detector = FaceDetector(max_side=640, enlarge=2.0)
    min_width = 100
    found = detector.detect(_textured(60, 64))
    assert sizes == [(60, 64), (92, 96), (120, 128)]  # as it is, padded by 16 px, enlarged 2x
    np.testing.assert_allclose(found[0].points5, 19.5)  # pixel centres: (39.5 + 0.5) / 2 - 0.5
    np.testing.assert_allclose(found[0].box, [-0.25, -0.25, 39.75, 39.75])
    sizes.clear()
    min_width = 620
    np.testing.assert_allclose(detector.detect(_textured(50, 400))[0].points5, 40 / 1.6 - 0.5)
    assert sizes == [(50, 400), (250, 600), (80, 640)]  # enlarged only up to max_side
    sizes.clear()
    min_width = 2000
    assert detector.detect(_textured(40, 640)) == [] and sizes == [(40, 640), (360, 960)]
    sizes.clear()
    assert FaceDetector(max_side=640).detect(_textured(60, 64)) == [] and sizes == [(60, 64), (92, 96)]


@needs_detector
def test_a_face_too_small_for_the_detector_is_found_in_the_enlarged_view():
    from models.data.faces import annotation_table
    from models.face.detect import FaceDetector
    from models.glasses.search import detection_view, glasses_detector, locate_faces

    t = annotation_table("lfw")
    row = int(np.flatnonzero(t["file"] == "Aaron_Patterson_0001.jpg")[0])
    photo = cv2.resize(cv2.imread(str(t["image_dir"] / t["file"][row]))[..., ::-1], (75, 75),
                       interpolation=cv2.INTER_AREA)
    true = (t["five_points"][row][:2] + 0.5) * 75 / 250 - 0.5  # eyes 12 px apart
    detector = glasses_detector()
    assert detector.enlarge == 2.0
    one_look = FaceDetector(device="cpu", pyramid_step=0.5, conf_threshold=0.5, support_threshold=0.5, max_side=640)
    assert one_look.detect(detection_view(photo)) == []
    found = locate_faces(detector, photo)
    assert len(found) == 1
    assert np.linalg.norm(found[0][:2].mean(0) - true.mean(0)) < 0.5 * np.linalg.norm(true[1] - true[0])


@needs_detector
def test_no_face_is_refused_with_the_message(tiny_search):
    from models.glasses.search import REFUSAL_MESSAGE, GlassesRefusal

    flat = np.full((160, 200, 3), 128, np.uint8)
    with pytest.raises(GlassesRefusal) as err:
        tiny_search(flat)
    assert err.value.reason == "no_face"
    assert str(err.value) == "No face was found in this photo. " + REFUSAL_MESSAGE
    assert REFUSAL_MESSAGE == "Please upload a photo of a face wearing glasses or sunglasses."


@needs_detector
def test_face_below_the_presence_threshold_is_refused_and_above_it_searched(tiny_search):
    from models.data.faces import annotation_table
    from models.glasses.search import GlassesRefusal, GlassesSearch

    t = annotation_table("lfw")
    img = np.ascontiguousarray(cv2.imread(str(t["image_dir"] / t["file"][0]))[..., ::-1])
    response = tiny_search(img, k=7)
    assert len(response.results) == 7 and [r.rank for r in response.results] == list(range(1, 8))
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    best = int(np.argmax(tiny_search.embeddings @ response.face.embedding))
    assert response.results[0].product_id == tiny_search.products[best].id
    assert np.linalg.norm(response.points5[0] - t["five_points"][0][0]) < 15  # the central face was found
    strict = GlassesSearch(tiny_search.embedder, tiny_search.embeddings, tiny_search.products,
                           presence_threshold=1.01, detector=tiny_search.detector)
    with pytest.raises(GlassesRefusal, match="does not seem to wear glasses") as err:
        strict(img)
    assert err.value.reason == "no_glasses"
    with pytest.raises(ValueError, match="below the presence threshold"):
        GlassesSearch(tiny_search.embedder, tiny_search.embeddings, tiny_search.products, presence_threshold=0.8,
                      detector=tiny_search.detector, second_look_threshold=0.7)


def test_catalogue_index_round_trip_and_weights_check(tmp_path):
    from models.glasses.search import CatalogueIndexError, load_catalogue_index, save_catalogue_index

    emb = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    path = save_catalogue_index(tmp_path / "idx.safetensors", emb, [f"gl-{i}" for i in range(5)],
                                {"model_sha256": "a" * 64, "presence_threshold": 0.3})
    index = load_catalogue_index(path, expected_model_sha256="a" * 64)
    np.testing.assert_array_equal(index.embeddings, emb)
    assert index.product_ids[4] == "gl-4" and index.meta["presence_threshold"] == 0.3
    with pytest.raises(CatalogueIndexError, match="register again"):
        load_catalogue_index(path, expected_model_sha256="b" * 64)
    with pytest.raises(CatalogueIndexError, match="no registered catalogue"):
        load_catalogue_index(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------------------- eval task

def test_frame_breakdown_counts_refused_queries_as_misses():
    from types import SimpleNamespace

    from eval.glasses import frame_breakdown

    frame = {"a": ("metal", "full", "clear", "round"), "b": ("acetate", "full", "tinted", "round")}
    products = {k: SimpleNamespace(**dict(zip(("material", "rim_style", "lens_type", "shape"), v)))
                for k, v in frame.items()}
    queries = [{"product_id": "a", "refused": False, "rank": 3}, {"product_id": "a", "refused": True, "rank": 1},
               {"product_id": "a", "refused": False, "rank": 11}, {"product_id": "b", "refused": False, "rank": 1}]
    out = frame_breakdown(queries, products)
    assert out["material"]["metal"] == {"count": 3, "top10": pytest.approx(1 / 3), "refused": pytest.approx(1 / 3)}
    assert out["material"]["acetate"] == {"count": 1, "top10": 1.0, "refused": 0.0}
    assert list(out["shape"]) == ["round"] and out["shape"]["round"]["top10"] == 0.5


def test_eye_distance_breakdown_bins_queries_by_their_photo_eye_distance():
    from eval.glasses import eye_distance_breakdown

    queries = [{"eye_distance": 21.0, "refused": False, "rank": 2}, {"eye_distance": 26.0, "refused": True, "rank": 1},
               {"eye_distance": 30.0, "refused": False, "rank": 12}, {"eye_distance": 45.5, "refused": False, "rank": 1},
               {"refused": False, "rank": 1}]
    out = eye_distance_breakdown(queries, edges=(26.0, 32.0, 38.0))
    assert list(out) == ["< 26", "26-32", ">= 38"]
    assert out["< 26"] == {"count": 1, "top10": 1.0, "refused": 0.0}
    assert out["26-32"] == {"count": 2, "top10": 0.0, "refused": 0.5}
    assert out[">= 38"]["count"] == 1


@needs_detector
def test_eval_task_runs_end_to_end_on_a_tiny_subset_and_resumes(tmp_path, tiny_search):
    from eval.glasses import METHOD, GlassesOptions, evaluate_glasses
    from eval.leaderboard import leaderboard_table

    opts = GlassesOptions(out=tmp_path / "g", queries=2, no_glasses=1, non_faces=1, progress=False, search=tiny_search)
    summary = evaluate_glasses(opts)
    rows = [json.loads(line) for line in (tmp_path / "g" / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["kind"] for r in rows) == ["no_glasses", "non_face", "query", "query", "real_glasses"]
    for r in rows:
        if r["kind"] == "query" and r["detected"]:
            assert 1 <= r["rank"] <= 3200 and len(r["top10"]) == 10
    ours = summary["ours"][METHOD]["metrics"]
    queries = [r for r in rows if r["kind"] == "query"]
    top10 = sum(1 for r in queries if not r["refused"] and r["rank"] is not None and r["rank"] <= 10) / 2
    assert ours["top10"]["value"] == pytest.approx(top10)
    assert ours["top1"]["value"] <= ours["top5"]["value"] <= ours["top10"]["value"]
    assert summary["published"]["available"] is False or "glass_finder" in summary["published"]["tables"]
    assert "top-1" in (tmp_path / "g" / "summary.md").read_text()
    by_material = summary["by_frame"]["material"]
    assert sum(g["count"] for g in by_material.values()) == 2
    assert sum(g["count"] * g["top10"] for g in by_material.values()) == pytest.approx(top10 * 2)
    assert "Top-10 by frame" in (tmp_path / "g" / "summary.md").read_text()
    assert all(0 < r["eye_distance"] <= 46.5 for r in queries)  # the augmentation only shrinks, to at most 46 px
    assert sum(g["count"] for g in summary["by_eye_distance"].values()) == 2
    evaluate_glasses(opts)  # resumes: nothing is redone
    assert len((tmp_path / "g" / "rows.jsonl").read_text().splitlines()) == len(rows)
    headers, table = leaderboard_table(summary)
    assert table[0][:2] == ["ours", METHOD]


# ------------------------------------------------------------------------------------------ weights I/O

def test_embedding_weights_save_and_load_strictly(tmp_path):
    from safetensors.torch import load_file, save_file

    net = _net(1)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "model.safetensors")
    other = _net(2)
    x = torch.rand(2, 3, BAND_H, BAND_W)
    assert not torch.allclose(net(x)["embedding"], other(x)["embedding"])
    state = load_file(tmp_path / "model.safetensors")
    other.load_state_dict(state, strict=True)
    out, ref = other(x), net(x)
    for key in ("embedding", "presence", "eyes"):
        torch.testing.assert_close(out[key], ref[key])
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2))
    state.pop("presence.bias")
    with pytest.raises(RuntimeError, match="presence.bias"):
        _net().load_state_dict(state, strict=True)
    with pytest.raises(ValueError, match="48x128"):
        net(torch.rand(1, 3, 64, 160))


def test_augmentation_is_seeded_and_moves_the_points():
    from models.glasses.augment import augment_photo

    img = _textured(250, 250, seed=5)
    pts = np.array([[105, 110], [145, 110], [125, 135], [110, 160], [140, 160]], np.float32)
    a, pa = augment_photo(img, pts, np.random.default_rng(4))
    b, pb = augment_photo(img, pts, np.random.default_rng(4))
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert pa[0, 0] < pa[1, 0]  # image-left eye stays image-left, flipped or not
    assert (pa >= 0).all() and (pa[:, 0] < a.shape[1]).all() and (pa[:, 1] < a.shape[0]).all()
    iod = np.linalg.norm(pa[1] - pa[0])
    assert 18 <= iod <= 47


def test_the_pose_turns_the_photo_about_the_face_without_moving_it():
    from models.glasses.augment import PhotoAugment, augment_photo

    img = _textured(250, 250, seed=6)
    pts = np.array([[105, 110], [145, 110], [125, 135], [110, 160], [140, 160]], np.float32)
    drift = {False: [], True: []}
    for seed in range(8):
        for legacy in (False, True):
            photo, moved = augment_photo(img, pts, np.random.default_rng(seed), PhotoAugment(pose_moves_face=legacy))
            cx, cy = pts.mean(0)
            centres = [(np.array([x, cy]) + 0.5) * photo.shape[1] / 250 - 0.5 for x in (cx, 249 - cx)]  # or flipped
            err = min(np.linalg.norm(moved.mean(0) - c) for c in centres)
            drift[legacy].append(err / np.linalg.norm(moved[1] - moved[0]))
    assert max(drift[False]) < 0.1  # the mean of the 5 points is not exactly the centre under perspective
    assert max(drift[True]) > 0.5  # the old camera-panning pose moved the face
