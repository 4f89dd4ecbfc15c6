"""Product attributes as auxiliary training targets of the embedding.

A product's drawing parameters (shape, rim, lens type, frame and lens colours, sizes) are shared across
products, so predicting them from the band teaches features that carry over to products never seen in
training (the open set), which the per-product proxies alone do not. Categorical attributes are
classified, continuous ones regressed (colours as sRGB / 255, sizes standardised over the catalogue).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.glasses.catalogue import (BRIDGE_STYLES, FRAME_PATTERNS, LENS_TYPES, RIM_STYLES, SHAPES,
                                      GlassesProduct)

CATEGORIES = {"shape": SHAPES, "rim_style": RIM_STYLES, "frame_pattern": FRAME_PATTERNS, "lens_type": LENS_TYPES,
              "bridge_style": BRIDGE_STYLES, "material": ("acetate", "metal"), "kind": ("optical", "sun")}
COLOURS = ("frame_color", "frame_color2", "lens_color", "metal_color")
LEVELS = ("frame_opacity", "frame_opacity2", "lens_opacity", "lens_gradient", "gloss")
SIZES = ("lens_width", "lens_height", "rim_thickness", "rim_top_extra", "bridge_width", "bridge_thickness",
         "temple_thickness", "endpiece_width", "taper", "upsweep", "drop", "n_top", "n_bottom", "wrap")
CONTINUOUS = 3 * len(COLOURS) + len(LEVELS) + len(SIZES)
DIM = sum(len(v) for v in CATEGORIES.values()) + CONTINUOUS  # width of the network's attribute head


def attribute_targets(products: list[GlassesProduct] | tuple[GlassesProduct, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(P, len(CATEGORIES)) int64 class indices and (P, CONTINUOUS) float32 regression targets."""
    cats = np.array([[values.index(getattr(p, name)) for name, values in CATEGORIES.items()] for p in products])
    colours = np.array([[c / 255 for name in COLOURS for c in getattr(p, name)] for p in products], np.float32)
    levels = np.array([[float(getattr(p, name)) for name in LEVELS] for p in products], np.float32)
    sizes = np.array([[float(getattr(p, name)) for name in SIZES] for p in products], np.float64)
    sizes = (sizes - sizes.mean(0)) / np.maximum(sizes.std(0), 1e-6)
    return cats.astype(np.int64), np.concatenate([colours, levels, sizes.astype(np.float32)], 1)


def attribute_loss(logits: torch.Tensor, cats: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the categorical attributes plus the smooth-L1 error of the continuous ones."""
    loss, start = logits.new_zeros(()), 0
    for k, values in enumerate(CATEGORIES.values()):
        loss = loss + F.cross_entropy(logits[:, start:start + len(values)], cats[:, k])
        start += len(values)
    return loss / len(CATEGORIES) + F.smooth_l1_loss(logits[:, start:], cont, beta=0.1) * 4
