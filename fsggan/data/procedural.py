"""Built-in occluders drawn with PIL/numpy (no downloads), seeded.

`procedural_occluders(count, seed, kinds)` returns `count` `Occluder`s cycling through
`kinds`; each object has its own random shape, colour and texture drawn from
`numpy.random.default_rng([seed, i])`, so the same arguments give the same pixels.

Kinds (category; anchors):
  sunglasses     eyes; lens centres are the eye anchors
  round_glasses  eyes; lens centres are the eye anchors
  mask           lower_face (surgical/cloth mask); nose and mouth-corner anchors
  scarf          lower_face; nose and mouth-corner anchors
  hand           anywhere (palm + fingers)
  blob           anywhere (smooth random blob)
  bar            eyes (a censor bar across the eyes)
  polygon        anywhere (random polygon)
  stripes        anywhere (striped patch)
  ellipse        anywhere (textured ellipse, e.g. a cup seen from the front)

`SEEN_KINDS` / `NEW_KINDS` are disjoint sets used by configs/data/procedural.yaml for the
two pools, so Set2 ("new occluders") really holds other kinds of object.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .occluders import Occluder

__all__ = ["procedural_occluders", "draw_occluder", "PROCEDURAL_KINDS", "SEEN_KINDS", "NEW_KINDS"]

SEEN_KINDS = ("sunglasses", "mask", "hand", "bar", "polygon")
NEW_KINDS = ("round_glasses", "scarf", "blob", "stripes", "ellipse")
PROCEDURAL_KINDS = SEEN_KINDS + NEW_KINDS

_SS = 2  # supersampling factor for smooth edges


def _colour(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _skin(rng):
    base = np.array([224, 172, 140]) * rng.uniform(0.45, 1.05)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 8, 3), 0, 255))


def _finish(canvas: Image.Image, rng, size: int, noise: float = 6.0, shade: float = 0.15) -> np.ndarray:
    """Downsample the supersampled drawing, add light shading and noise texture."""
    im = canvas.resize((size[0], size[1]), Image.Resampling.LANCZOS)
    arr = np.asarray(im, np.float32).copy()
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    grad = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * 2 * shade
    arr[..., :3] *= (1.0 + grad)[..., None]
    arr[..., :3] += rng.normal(0, noise, size=(h, w, 3)).astype(np.float32)
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def _sunglasses(rng, round_: bool):
    w, h = 240, 90
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(c)
    frame = _colour(rng, 0, 90) if not round_ else _colour(rng, 0, 255)
    lens = _colour(rng, 0, 70) if not round_ else tuple(int(v) for v in np.array(_colour(rng, 20, 200)) // 2)
    lens_a = 255 if not round_ else int(rng.integers(225, 256))
    gap = rng.uniform(0.10, 0.18) * w
    lw = (w - gap) / 2 - 6
    lh = lw * (rng.uniform(0.55, 0.8) if not round_ else rng.uniform(0.85, 1.0))
    lh = min(lh, h - 10)
    cy = h / 2
    centres = []
    for side in (0, 1):
        x0 = 4 + side * (lw + gap + 4)
        box = [x0 * _SS, (cy - lh / 2) * _SS, (x0 + lw) * _SS, (cy + lh / 2) * _SS]
        t = int(rng.integers(3, 7)) * _SS
        if round_:
            d.ellipse(box, fill=frame + (255,))
            d.ellipse([box[0] + t, box[1] + t, box[2] - t, box[3] - t], fill=lens + (lens_a,))
        else:
            r = int(lh * rng.uniform(0.2, 0.45)) * _SS
            d.rounded_rectangle(box, radius=r, fill=frame + (255,))
            d.rounded_rectangle([box[0] + t, box[1] + t, box[2] - t, box[3] - t], radius=max(1, r - t), fill=lens + (lens_a,))
        centres.append((x0 + lw / 2, cy))
    # bridge
    bx0, bx1 = 4 + lw, 4 + lw + gap + 4
    d.rectangle([bx0 * _SS, (cy - lh * 0.35) * _SS, bx1 * _SS, (cy - lh * 0.35 + 5) * _SS], fill=frame + (255,))
    arr = _finish(c, rng, (w, h), noise=3.0)
    return arr, {"left_eye": centres[0], "right_eye": centres[1]}


def _mask(rng, scarf: bool):
    w, h = 220, 170 if not scarf else 150
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(c)
    col = _colour(rng, 150, 256) if not scarf else _colour(rng, 20, 220)
    if not scarf:
        top_inset, bot_inset = rng.uniform(0.12, 0.2) * w, rng.uniform(0.2, 0.3) * w
        pts = [(top_inset, 8), (w - top_inset, 8), (w - 6, h * 0.45), (w - bot_inset, h - 8), (bot_inset, h - 8), (6, h * 0.45)]
        d.polygon([(x * _SS, y * _SS) for x, y in pts], fill=col + (255,))
        dark = tuple(max(0, v - 40) for v in col)
        for k in range(3):  # pleats
            y = h * (0.3 + 0.15 * k)
            d.line([(w * 0.15 * _SS, y * _SS), (w * 0.85 * _SS, y * _SS)], fill=dark + (255,), width=2 * _SS)
        anchors = {"nose": (w / 2, h * 0.22), "mouth_left": (w * 0.34, h * 0.62), "mouth_right": (w * 0.66, h * 0.62)}
    else:
        d.rounded_rectangle([4 * _SS, 4 * _SS, (w - 4) * _SS, (h - 4) * _SS], radius=30 * _SS, fill=col + (255,))
        col2 = _colour(rng, 0, 255)
        period = int(rng.integers(14, 30))
        for y in range(10, h - 10, period):
            d.rectangle([4 * _SS, y * _SS, (w - 4) * _SS, (y + period // 3) * _SS], fill=col2 + (255,))
        anchors = {"nose": (w / 2, h * 0.12), "mouth_left": (w * 0.36, h * 0.5), "mouth_right": (w * 0.64, h * 0.5)}
    arr = _finish(c, rng, (w, h), noise=5.0)
    return arr, anchors


def _hand(rng):
    w, h = 170, 220
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(c)
    skin = _skin(rng)
    S = _SS
    d.ellipse([30 * S, 90 * S, 140 * S, 210 * S], fill=skin + (255,))
    fw = rng.uniform(20, 26)
    for k in range(4):
        x = 38 + k * 26 + rng.uniform(-2, 2)
        top = 20 + abs(1.5 - k) * 12 + rng.uniform(-6, 6)
        d.rounded_rectangle([x * S, top * S, (x + fw) * S, 140 * S], radius=int(fw / 2 * S), fill=skin + (255,))
    # thumb
    d.rounded_rectangle([120 * S, 100 * S, 160 * S, 175 * S], radius=18 * S, fill=skin + (255,))
    arr = _finish(c, rng, (w, h), noise=4.0)
    return arr, {}


def _blob(rng):
    n = 96
    field = np.zeros((n, n), np.float32)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for _ in range(int(rng.integers(4, 9))):
        cx, cy = rng.uniform(0.3, 0.7, 2) * n
        r = rng.uniform(0.12, 0.25) * n
        field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    alpha = (field > 0.6).astype(np.float32) * 255
    a = Image.fromarray(alpha.astype(np.uint8)).resize((200, 200), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(1.5))
    a = np.asarray(a, np.float32)
    a = np.clip((a - 100) * 2.5, 0, 255)
    col = np.array(_colour(rng), np.float32)
    rgb = np.broadcast_to(col, (200, 200, 3)).copy()
    rgb += rng.normal(0, 12, size=(200, 200, 3)).astype(np.float32)
    arr = np.concatenate([np.clip(rgb, 0, 255), a[..., None]], axis=2).astype(np.uint8)
    return arr, {}


def _bar(rng):
    w, h = 240, int(rng.integers(40, 70))
    col = (0, 0, 0) if rng.random() < 0.6 else _colour(rng)
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    ImageDraw.Draw(c).rectangle([2 * _SS, 2 * _SS, (w - 2) * _SS, (h - 2) * _SS], fill=col + (255,))
    return _finish(c, rng, (w, h), noise=2.0, shade=0.0), {}


def _polygon(rng):
    s = 200
    k = int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    rad = rng.uniform(0.45, 0.95, k) * s / 2
    pts = [(s / 2 + r * math.cos(a), s / 2 + r * math.sin(a)) for a, r in zip(ang, rad)]
    c = Image.new("RGBA", (s * _SS, s * _SS), (0, 0, 0, 0))
    ImageDraw.Draw(c).polygon([(x * _SS, y * _SS) for x, y in pts], fill=_colour(rng) + (255,))
    return _finish(c, rng, (s, s), noise=10.0, shade=0.25), {}


def _stripes(rng):
    w, h = int(rng.integers(120, 220)), int(rng.integers(80, 200))
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(c)
    a, b = _colour(rng), _colour(rng)
    d.rounded_rectangle([2 * _SS, 2 * _SS, (w - 2) * _SS, (h - 2) * _SS], radius=8 * _SS, fill=a + (255,))
    period = int(rng.integers(10, 26))
    for x in range(6, w - 6, period):
        d.rectangle([x * _SS, 6 * _SS, (x + period // 2) * _SS, (h - 6) * _SS], fill=b + (255,))
    return _finish(c, rng, (w, h), noise=5.0), {}


def _ellipse(rng):
    w, h = int(rng.integers(110, 180)), int(rng.integers(140, 220))
    c = Image.new("RGBA", (w * _SS, h * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(c)
    d.ellipse([2 * _SS, 2 * _SS, (w - 2) * _SS, (h - 2) * _SS], fill=_colour(rng) + (255,))
    band = _colour(rng)
    y = rng.uniform(0.3, 0.6) * h
    d.rectangle([0, y * _SS, w * _SS, (y + 0.12 * h) * _SS], fill=band + (255,))
    arr = _finish(c, rng, (w, h), noise=6.0, shade=0.3)
    # the band is drawn over transparent pixels too: keep the ellipse's outline
    ell = Image.new("L", (w * _SS, h * _SS), 0)
    ImageDraw.Draw(ell).ellipse([2 * _SS, 2 * _SS, (w - 2) * _SS, (h - 2) * _SS], fill=255)
    arr[..., 3] = np.minimum(arr[..., 3], np.asarray(ell.resize((w, h), Image.Resampling.LANCZOS)))
    return arr, {}


_DRAW = {
    "sunglasses": (lambda rng: _sunglasses(rng, False), "eyes"),
    "round_glasses": (lambda rng: _sunglasses(rng, True), "eyes"),
    "mask": (lambda rng: _mask(rng, False), "lower_face"),
    "scarf": (lambda rng: _mask(rng, True), "lower_face"),
    "hand": (_hand, "anywhere"),
    "blob": (_blob, "anywhere"),
    "bar": (_bar, "eyes"),
    "polygon": (_polygon, "anywhere"),
    "stripes": (_stripes, "anywhere"),
    "ellipse": (_ellipse, "anywhere"),
}


def draw_occluder(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict, str]:
    """Draw one occluder of `kind`: returns (rgba uint8, anchors, category)."""
    if kind not in _DRAW:
        raise ValueError(f"unknown procedural occluder kind {kind!r}; use one of {', '.join(_DRAW)}")
    fn, cat = _DRAW[kind]
    arr, anchors = fn(rng)
    return arr, anchors, cat


def procedural_occluders(count: int = 24, seed: int = 0, kinds: Sequence[str] | None = None) -> list[Occluder]:
    """`count` drawn occluders cycling through `kinds` (default: all), seeded by `seed`."""
    kinds = tuple(kinds) if kinds else PROCEDURAL_KINDS
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        rng = np.random.default_rng([seed, i])
        arr, anchors, cat = draw_occluder(kind, rng)
        out.append(
            Occluder(name=f"procedural/s{seed}/{kind}_{i:03d}", rgba=arr, category=cat, anchors=anchors, source="procedural")
        )
    return out
