"""Glasses-search examples: the LFW photos of docs/examples/ (research use only) wearing test-split catalogue
products (never seen in the embedding's training), drawn by the try-on renderer from the detector's 5 points.

    ./dev python docs/examples/glasses/make.py
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for `models`

from models.face.detect import FaceDetector  # noqa: E402
from models.glasses.catalogue import build_catalogue  # noqa: E402
from models.glasses.render import render_tryon  # noqa: E402

test_products = build_catalogue().split("test")
detector = FaceDetector()
for i, photo in enumerate(sorted(HERE.parent.glob("*.jpg"))):
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    product = test_products[(i * 97) % len(test_products)]
    out = render_tryon(rgb, detector.detect(rgb)[0].points5, product, seed=i)
    Image.fromarray(out).save(HERE / f"{photo.stem}_{product.id}.jpg", quality=90)
