"""A deterministic catalogue of eyeglasses products described by drawing parameters.

Products are organised like a real shop's: a *model* (a frame design: shape, size, rim, bridge, temples)
comes in one to six *colourways* (frame colour/pattern and lens), so same-shape near-duplicates exist and
retrieval has to tell colours and lenses apart. Every model is drawn from its own generator,
`numpy.random.default_rng([seed, model_index])`, so a smaller catalogue is a prefix of a larger one.

The open-set split is by model: a model, with all its colourways, is a test model when a hash of
(seed, model code) falls below `test_fraction`. It depends on nothing else (not on the catalogue size or
order), so it never changes for a given seed, and no colourway of a test model is seen in training.

Sizes are in millimetres, colours are sRGB 0-255 tuples. A product's id is a hash of its drawing
parameters, so the same parameters always give the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

RGB = tuple[int, int, int]

CATALOGUE_SEED = 0
CATALOGUE_SIZE = 3200
TEST_FRACTION = 0.25
FORMAT_VERSION = 1

SHAPES = ("round", "oval", "rectangle", "square", "cat_eye", "aviator", "browline", "rimless", "geometric",
          "wayfarer", "panto", "butterfly")
SHAPE_WEIGHTS = (0.11, 0.09, 0.12, 0.09, 0.09, 0.09, 0.07, 0.07, 0.06, 0.1, 0.06, 0.05)
RIM_STYLES = ("full", "browline", "semi_rimless", "rimless")
FRAME_PATTERNS = ("solid", "tortoise", "gradient", "two_tone")
LENS_TYPES = ("clear", "tinted", "gradient", "mirrored")
BRIDGE_STYLES = ("keyhole", "saddle", "straight", "metal_arch", "double")

# (name, colour, opacity): acetate colours; opacity < 1 are crystal (see-through) acetates.
ACETATE_SOLIDS = (
    ("Black", (18, 18, 20), 1.0), ("Matte Black", (40, 40, 42), 1.0), ("Navy", (28, 38, 72), 1.0),
    ("Burgundy", (95, 22, 38), 1.0), ("Olive", (80, 84, 46), 1.0), ("Slate Grey", (72, 76, 82), 1.0),
    ("Crystal", (226, 229, 232), 0.35), ("Grey Crystal", (140, 146, 152), 0.6), ("Honey", (196, 134, 52), 0.8),
    ("Red", (172, 30, 36), 1.0), ("Blush", (222, 162, 160), 0.9), ("Ivory", (236, 228, 210), 1.0),
    ("Forest", (30, 72, 46), 1.0), ("Cobalt", (32, 72, 162), 1.0), ("Tan", (166, 122, 82), 1.0),
    ("White", (242, 242, 240), 1.0), ("Plum", (88, 40, 92), 1.0), ("Teal", (20, 100, 108), 0.9),
)
# (name, base, spots)
TORTOISES = (
    ("Havana", (112, 62, 26), (38, 20, 9)), ("Blonde Tortoise", (206, 156, 84), (112, 62, 26)),
    ("Dark Tortoise", (62, 34, 16), (18, 10, 5)), ("Green Tortoise", (92, 98, 56), (32, 36, 20)),
    ("Grey Tortoise", (128, 122, 116), (52, 46, 42)), ("Red Tortoise", (140, 48, 30), (52, 16, 10)),
)
# (name, top, bottom)
GRADIENTS = (
    ("Black Fade", (18, 18, 20), (205, 205, 210)), ("Navy Fade", (28, 38, 72), (200, 212, 228)),
    ("Purple Fade", (82, 40, 104), (222, 204, 232)), ("Brown Fade", (84, 46, 24), (218, 194, 164)),
    ("Rose Fade", (172, 72, 92), (238, 214, 214)), ("Green Fade", (30, 72, 46), (200, 222, 200)),
)
METALS = (
    ("Gold", (208, 172, 98)), ("Silver", (196, 198, 204)), ("Gunmetal", (84, 87, 94)),
    ("Rose Gold", (212, 156, 136)), ("Matte Black Metal", (42, 42, 44)), ("Bronze", (142, 102, 62)),
    ("Champagne", (216, 196, 162)), ("Blue Metal", (62, 82, 132)),
)
# (name, colour, opacity)
CLEAR_LENSES = (("Clear", (236, 239, 243), 0.05), ("Blue-Light Clear", (222, 234, 246), 0.08))
SUN_TINTS = (
    ("Grey", (42, 44, 46), 0.8), ("Dark Grey", (26, 27, 29), 0.88), ("Brown", (84, 52, 28), 0.75),
    ("G-15 Green", (46, 62, 40), 0.8), ("Blue", (30, 46, 84), 0.72), ("Rose", (176, 92, 92), 0.45),
    ("Yellow", (206, 172, 60), 0.4), ("Amber", (150, 92, 30), 0.6),
)
MIRRORS = (
    ("Silver Mirror", (205, 210, 220)), ("Blue Mirror", (62, 116, 214)), ("Gold Mirror", (218, 172, 72)),
    ("Green Mirror", (62, 164, 112)), ("Red Mirror", (224, 84, 52)), ("Purple Mirror", (144, 84, 196)),
)
BRANDS = ("Lumen", "Northvale", "Oculo", "Brisa", "Kestrel", "Verano", "Halden", "Mirae", "Solstra", "Arden",
          "Tavi", "Corvo", "Fjell", "Marlow", "Quill", "Sabine", "Ostra", "Vantage", "Wren", "Ilse")
# (top, bottom) indices into ACETATE_SOLIDS: a dark top over a crystal or light bottom
_TWO_TONES = ((0, 6), (2, 6), (3, 11), (4, 6), (13, 6), (16, 6), (0, 14), (3, 10))
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io")
_CODAS = ("", "", "n", "r", "l", "s", "x", "nd")


@dataclass(frozen=True)
class GlassesProduct:
    """One catalogue entry. Lens geometry is for one lens, in its own frame (x toward the temple, y down)."""

    id: str
    name: str
    model: str  # frame-design code shared by all colourways, e.g. "M0042"
    colourway: int
    split: str  # "train" or "test" (by model)
    brand: str
    shape: str
    kind: str  # "optical" or "sun"
    material: str  # "acetate" or "metal"
    # lens outline: superellipse with separate top/bottom exponents, then deformed
    lens_width: float
    lens_height: float
    n_top: float
    n_bottom: float
    taper: float  # > 0: top wider than bottom
    upsweep: float  # cat-eye lift of the outer top corner
    drop: float  # aviator teardrop: inner bottom hangs lower
    sides: int  # > 0: polygonal (geometric) outline with that many sides
    lens_tilt: float  # degrees, outer side up
    # rim
    rim_style: str
    rim_thickness: float
    rim_top_extra: float  # relative extra thickness along the top
    frame_pattern: str
    frame_color: RGB
    frame_color2: RGB  # tortoise spots, gradient bottom, two-tone bottom
    frame_color_name: str
    frame_opacity: float
    frame_opacity2: float  # opacity where frame_color2 shows (a fade or two-tone into crystal)
    gloss: float
    metal_color: RGB  # wires, hinges, nose-pad arms, browline lower rim
    # lens
    lens_type: str
    lens_color: RGB
    lens_opacity: float
    lens_gradient: float  # how much the opacity fades from top to bottom (0 none, 1 clear at the bottom)
    lens_name: str
    # bridge, temples, fit
    bridge_style: str
    bridge_width: float
    bridge_height: float  # bridge centre below the lens top, as a fraction of the lens height
    bridge_thickness: float
    temple_thickness: float  # height of the temple arm
    temple_color: RGB
    endpiece_width: float
    nose_pads: bool
    wrap: float  # face-form angle of each lens, degrees
    pattern_seed: int

    def parameters(self) -> dict:
        """The drawing parameters (everything except id, name and split)."""
        d = dataclasses.asdict(self)
        for key in ("id", "name", "split"):
            d.pop(key)
        return d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GlassesProduct":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = set(fields) - set(d)
        if missing:
            raise ValueError(f"product {d.get('id', '?')} lacks fields {sorted(missing)}")
        return cls(**{k: tuple(int(c) for c in v) if k.endswith("color") or k.endswith("color2") else v
                      for k, v in d.items() if k in fields})


def product_id(parameters: dict) -> str:
    blob = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return "gl-" + hashlib.sha1(blob.encode()).hexdigest()[:10]


def is_test_model(model: str, seed: int, test_fraction: float = TEST_FRACTION) -> bool:
    """The open-set split: a model is a test model when its seeded hash falls below test_fraction."""
    h = hashlib.blake2b(f"{seed}/{model}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64 < test_fraction


@dataclass(frozen=True)
class Catalogue:
    seed: int
    test_fraction: float
    products: tuple[GlassesProduct, ...]

    def __post_init__(self) -> None:
        ids = [p.id for p in self.products]
        if len(set(ids)) != len(ids):
            raise ValueError("catalogue has duplicate product ids")
        object.__setattr__(self, "_by_id", {p.id: p for p in self.products})

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[GlassesProduct]:
        return iter(self.products)

    def get(self, product_id: str) -> GlassesProduct:
        try:
            return self._by_id[product_id]
        except KeyError:
            raise KeyError(f"no product {product_id!r} in the catalogue") from None

    def split(self, name: Literal["train", "test"]) -> tuple[GlassesProduct, ...]:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {name!r}")
        return tuple(p for p in self.products if p.split == name)

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "seed": self.seed, "test_fraction": self.test_fraction,
                "products": [p.to_dict() for p in self.products]}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=None, separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Catalogue":
        data = json.loads(Path(path).read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: catalogue format {data.get('format_version')!r}, expected {FORMAT_VERSION}")
        return cls(seed=int(data["seed"]), test_fraction=float(data["test_fraction"]),
                   products=tuple(GlassesProduct.from_dict(p) for p in data["products"]))


def build_catalogue(seed: int = CATALOGUE_SEED, size: int = CATALOGUE_SIZE,
                    test_fraction: float = TEST_FRACTION) -> Catalogue:
    """`size` products from consecutive models (each with 1-6 colourways), deterministic for `seed`."""
    if size < 1:
        raise ValueError(f"catalogue size must be positive, got {size}")
    products: list[GlassesProduct] = []
    index = 0
    while len(products) < size:
        products.extend(_model_products(seed, index, test_fraction)[:size - len(products)])
        index += 1
    return Catalogue(seed=seed, test_fraction=test_fraction, products=tuple(products))


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)


def _word(rng: np.random.Generator) -> str:
    syllables = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(int(rng.integers(2, 4)))]
    return ("".join(syllables) + rng.choice(_CODAS)).capitalize()


def _design(rng: np.random.Generator) -> dict:
    """Frame-design parameters of one model (shared by its colourways)."""
    shape = str(rng.choice(SHAPES, p=np.asarray(SHAPE_WEIGHTS) / sum(SHAPE_WEIGHTS)))
    u = rng.uniform
    d = dict(shape=shape, n_top=2.0, n_bottom=2.0, taper=0.0, upsweep=0.0, drop=0.0, sides=0,
             lens_tilt=u(-2, 2), rim_style="full", rim_top_extra=0.0)
    metal_prob = {"round": 0.5, "oval": 0.4, "rectangle": 0.35, "square": 0.25, "cat_eye": 0.15, "aviator": 0.9,
                  "browline": 0.0, "rimless": 1.0, "geometric": 0.6, "wayfarer": 0.0, "panto": 0.4,
                  "butterfly": 0.2}[shape]
    material = "metal" if u() < metal_prob else "acetate"
    if shape == "round":
        w = u(44, 51); d.update(lens_width=w, lens_height=w * u(0.88, 1.0), n_top=u(2.0, 2.2), n_bottom=u(2.0, 2.2))
    elif shape == "oval":
        w = u(48, 55); d.update(lens_width=w, lens_height=w * u(0.62, 0.76), n_top=u(2.0, 2.5), n_bottom=u(2.0, 2.4))
    elif shape == "rectangle":
        w = u(50, 57); n = u(3.5, 7.0)
        d.update(lens_width=w, lens_height=w * u(0.55, 0.7), n_top=n, n_bottom=n * u(0.8, 1.0), taper=u(0, 0.08))
    elif shape == "square":
        w = u(48, 54); n = u(3.5, 6.0)
        d.update(lens_width=w, lens_height=w * u(0.82, 0.95), n_top=n, n_bottom=n * u(0.8, 1.0), taper=u(0, 0.06))
    elif shape == "cat_eye":
        w = u(50, 56)
        d.update(lens_width=w, lens_height=w * u(0.62, 0.76), n_top=u(2.5, 3.5), n_bottom=u(2.0, 2.6),
                 upsweep=u(0.15, 0.32), taper=u(0.05, 0.15), rim_top_extra=u(0.0, 0.5))
    elif shape == "aviator":
        w = u(54, 61)
        d.update(lens_width=w, lens_height=w * u(0.8, 0.9), n_top=u(2.8, 4.0), n_bottom=u(2.0, 2.3),
                 drop=u(0.15, 0.32), taper=u(0.04, 0.12))
    elif shape == "browline":
        w = u(48, 53)
        d.update(lens_width=w, lens_height=w * u(0.72, 0.82), n_top=u(2.6, 3.4), n_bottom=u(2.0, 2.6),
                 rim_style="browline", taper=u(0.02, 0.1))
    elif shape == "rimless":
        w = u(49, 55); n = u(2.0, 4.5)
        d.update(lens_width=w, lens_height=w * u(0.58, 0.75), n_top=n, n_bottom=u(2.0, n), rim_style="rimless",
                 taper=u(0, 0.08))
    elif shape == "geometric":
        w = u(47, 53)
        d.update(lens_width=w, lens_height=w * u(0.82, 0.95), sides=int(rng.choice([6, 8])))
    elif shape == "wayfarer":
        w = u(50, 55); n = u(3.0, 4.2)
        d.update(lens_width=w, lens_height=w * u(0.72, 0.82), n_top=n, n_bottom=n * u(0.75, 0.95),
                 taper=u(0.1, 0.2), rim_top_extra=u(0.3, 0.7), lens_tilt=u(2, 6))
    elif shape == "panto":
        w = u(46, 50)
        d.update(lens_width=w, lens_height=w * u(0.86, 0.96), n_top=u(2.8, 3.6), n_bottom=u(2.0, 2.2))
    else:  # butterfly: big, wide at the top outer corners, soft bottom
        w = u(55, 61)
        d.update(lens_width=w, lens_height=w * u(0.82, 0.95), n_top=u(2.6, 3.4), n_bottom=u(2.0, 2.4),
                 upsweep=u(0.06, 0.16), taper=u(0.08, 0.18), drop=u(0.0, 0.1))
    if material == "metal" and shape in ("rectangle", "oval") and u() < 0.25:
        d["rim_style"] = "semi_rimless"
    if d["rim_style"] == "rimless":
        rim = 0.0
    elif material == "metal":
        rim = u(0.7, 1.4)
    elif d["rim_style"] == "browline":
        rim = u(0.7, 1.0)  # the thin metal lower rim; the top gets rim_top_extra
        d["rim_top_extra"] = u(3.5, 6.0)
    else:
        rim = u(2.2, 4.6)
    if material == "metal":
        bridge = "double" if shape == "aviator" or u() < 0.2 else "metal_arch"
        temple, endpiece, nose_pads = u(1.2, 2.0), u(2.5, 4.5), True
        bridge_thickness = u(1.0, 1.6)
    else:
        bridge = str(rng.choice(["keyhole", "saddle", "straight"], p=[0.45, 0.35, 0.2]))
        temple, endpiece, nose_pads = u(3.5, 8.0), u(3.0, 6.5), False
        bridge_thickness = u(3.0, 5.5)
    if d["rim_style"] == "browline":
        bridge, nose_pads, bridge_thickness = "metal_arch", True, u(1.0, 1.5)
    d.update(material=material, rim_thickness=rim, bridge_style=bridge,
             bridge_width=u(19, 23) if shape in ("round", "panto") else u(14, 21),
             bridge_height=u(0.15, 0.4), bridge_thickness=bridge_thickness,
             temple_thickness=temple, endpiece_width=endpiece, nose_pads=nose_pads)
    sun_prob = {"aviator": 0.75, "butterfly": 0.85, "wayfarer": 0.55, "cat_eye": 0.45, "browline": 0.25}.get(shape, 0.3)
    kind = "sun" if u() < sun_prob else "optical"
    d.update(kind=kind, wrap=u(5, 10) if kind == "sun" else u(3, 7))
    return d


def _frame_colourways(rng: np.random.Generator, material: str, rim_style: str, n: int) -> list[dict]:
    """n frame colour options with distinct names; acetate patterns weighted like a shop's range."""
    if material == "metal":
        options = [dict(frame_pattern="solid", frame_color=c, frame_color2=c, frame_color_name=nm,
                        frame_opacity=1.0, frame_opacity2=1.0, metal_color=c) for nm, c in METALS]
        weights = np.ones(len(options))
    else:
        groups = [
            [dict(frame_pattern="solid", frame_color=c, frame_color2=c, frame_color_name=nm, frame_opacity=op,
                  frame_opacity2=op) for nm, c, op in ACETATE_SOLIDS],
            [dict(frame_pattern="tortoise", frame_color=base, frame_color2=spots, frame_color_name=nm,
                  frame_opacity=1.0, frame_opacity2=1.0) for nm, base, spots in TORTOISES],
            [dict(frame_pattern="gradient", frame_color=top, frame_color2=bottom, frame_color_name=nm,
                  frame_opacity=1.0, frame_opacity2=0.5) for nm, top, bottom in GRADIENTS],
        ]
        group_weights = [0.45, 0.3, 0.1]
        if rim_style != "browline":  # a browline's lower rim is metal already
            groups.append([dict(frame_pattern="two_tone", frame_color=ACETATE_SOLIDS[t][1],
                                frame_color2=ACETATE_SOLIDS[b][1], frame_opacity=1.0,
                                frame_opacity2=ACETATE_SOLIDS[b][2],
                                frame_color_name=f"{ACETATE_SOLIDS[t][0]} on {ACETATE_SOLIDS[b][0]}")
                           for t, b in _TWO_TONES])
            group_weights.append(0.15)
        options = [o for g in groups for o in g]
        weights = np.concatenate([np.full(len(g), w / len(g)) for g, w in zip(groups, group_weights)])
    chosen = rng.choice(len(options), size=n, replace=False, p=weights / weights.sum())
    out = []
    for i in chosen:
        opt = dict(options[int(i)])
        opt.setdefault("metal_color", METALS[int(rng.integers(len(METALS)))][1])
        out.append(opt)
    return out


def _lens(rng: np.random.Generator, kind: str) -> dict:
    if kind == "optical":
        nm, c, op = CLEAR_LENSES[int(rng.integers(len(CLEAR_LENSES)))]
        return dict(lens_type="clear", lens_color=c, lens_opacity=op, lens_gradient=0.0, lens_name=nm)
    lens_type = str(rng.choice(["tinted", "gradient", "mirrored"], p=[0.55, 0.25, 0.2]))
    if lens_type == "mirrored":
        nm, c = MIRRORS[int(rng.integers(len(MIRRORS)))]
        return dict(lens_type=lens_type, lens_color=c, lens_opacity=0.9, lens_gradient=0.0, lens_name=nm)
    nm, c, op = SUN_TINTS[int(rng.integers(len(SUN_TINTS)))]
    if lens_type == "gradient":
        return dict(lens_type=lens_type, lens_color=c, lens_opacity=op, lens_gradient=float(rng.uniform(0.6, 0.9)),
                    lens_name=f"{nm} Gradient")
    return dict(lens_type=lens_type, lens_color=c, lens_opacity=op, lens_gradient=0.0, lens_name=nm)


def _model_products(seed: int, index: int, test_fraction: float) -> list[GlassesProduct]:
    rng = np.random.default_rng([seed, index])
    model = f"M{index:04d}"
    design = _design(rng)
    brand = str(rng.choice(BRANDS))
    label = design["shape"].replace("_", "-").title()
    model_name = f"{brand} {_word(rng)} {101 + index}"
    n = int(rng.integers(1, 7))
    frames = _frame_colourways(rng, design["material"], design["rim_style"], n)
    split = "test" if is_test_model(model, seed, test_fraction) else "train"
    products = []
    for k, frame in enumerate(frames):
        lens = _lens(rng, design["kind"])
        gloss = rng.uniform(0.15, 0.35) if frame["frame_color_name"].startswith("Matte") else rng.uniform(0.5, 1.0)
        temple_color = frame["metal_color"] if design["material"] == "metal" else frame["frame_color"]
        params = dict(model=model, colourway=k, brand=brand, **design, **frame, **lens, gloss=gloss,
                      temple_color=temple_color, pattern_seed=int(rng.integers(2 ** 31)))
        params = {key: (_r(v) if isinstance(v, float) else tuple(int(c) for c in v) if isinstance(v, tuple) else v)
                  for key, v in params.items()}
        colour_name = f"{frame['frame_color_name']} / {lens['lens_name']}"
        products.append(GlassesProduct(id=product_id(params), name=f"{model_name} {label} - {colour_name}",
                                       split=split, **params))
    return products
