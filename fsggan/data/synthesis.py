"""Occlusion synthesis: place occluders relative to face landmarks and composite whole batches.

Per image, `sample_placement` draws (from that image's own numpy Generator) an occluder
and a 2-D similarity-plus-variation transform from cut-out pixels to face pixels:

1. shape variation: random horizontal flip (left/right anchors swap) and aspect stretch;
2. semantic placement:
   - objects with >= 2 anchors: least-squares similarity fit of the anchors onto the
     matching landmarks (e.g. sunglasses' lens centres onto the eyes);
   - otherwise the category default, in a face frame built from the landmarks (origin:
     eye midpoint, x along the eye line, unit: eye distance E):
       eyes        centre between the eyes, width 2.0 E (objects less than 1.5 times as
                   wide as high are eye patches: on one eye, width 1.1 E)
       upper_face  0.25 E below the eye midpoint, width 2.3 E
       nose        on the nose tip, sqrt(area) 0.8 E
       mouth       on the mouth centre, width 1.4 E
       lower_face  0.15 E below the mouth centre, width 2.1 E
       forehead    bottom edge 0.3 E above the eye midpoint (brows), width 2.4 E
       vertical    0.55 E left or right of centre, 1.0 E below the eyes, height 2.2 E
       anywhere    on a random face point (an eye, nose, mouth, forehead, a cheek, chin),
                   sqrt(area) uniform in `anywhere_size` x E, rotated by up to
                   +-`anywhere_rotation` degrees
3. jitter: scale x U(1 +- scale_jitter), rotation +- rotation_jitter degrees about the
   placement point, offset +- offset_jitter x E in x and y.
A placement whose mask covers less than `min_coverage` or more than `max_coverage` of the
image is redrawn (up to `max_tries` times) from the same Generator.

`OcclusionSynthesizer.__call__` then warps every occluder of the batch at once
(`affine_grid` + `grid_sample` on the library's `OccluderBank`, supersampled and
average-pooled for anti-aliasing) and composites with premultiplied alpha:
`occluded = clean * (1 - a) + occluder * a`, `mask = a > mask_threshold`. It runs on the
device of the input batch, so it works in DataLoader workers (CPU, batch of one) and on
the GPU on whole batches; the result of an image depends only on its Generator, not on
the batch it is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .landmarks import LANDMARK_NAMES
from .occluders import OccluderLibrary

__all__ = ["Placement", "OcclusionSynthesizer", "SynthesisResult", "item_rng", "similarity_fit"]

_SWAP = {"left_eye": "right_eye", "right_eye": "left_eye", "mouth_left": "mouth_right", "mouth_right": "mouth_left"}

# category -> (size measure, size in eye distances)
_CATEGORY_SIZE = {
    "eyes": ("width", 2.0),
    "upper_face": ("width", 2.3),
    "nose": ("sqrtarea", 0.8),
    "mouth": ("width", 1.4),
    "lower_face": ("width", 2.1),
    "forehead": ("width", 2.4),
    "vertical": ("height", 2.2),
}


@dataclass(frozen=True)
class Placement:
    """Random placement ranges (all plain numbers; see the module docstring)."""

    scale_jitter: float = 0.15
    rotation_jitter: float = 10.0
    anywhere_rotation: float = 45.0
    offset_jitter: float = 0.12
    aspect_jitter: float = 0.1
    flip: bool = True
    anywhere_size: tuple[float, float] = (1.1, 2.2)
    min_coverage: float = 0.04
    max_coverage: float = 0.6
    max_tries: int = 6
    mask_threshold: float = 0.5
    recolour: float = 0.0    # beyond the paper, for training: chance an occluder's colours change

    def __post_init__(self):
        if not 0.0 <= self.min_coverage <= self.max_coverage <= 1.0:
            raise ValueError(f"min_coverage={self.min_coverage}, max_coverage={self.max_coverage}: need "
                             f"0 <= min_coverage <= max_coverage <= 1")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold={self.mask_threshold}: must be in (0, 1)")
        if self.max_tries < 1:
            raise ValueError(f"max_tries={self.max_tries}: must be >= 1")
        if not 0.0 <= self.recolour <= 1.0:
            raise ValueError(f"recolour={self.recolour}: a chance per occluder, in [0, 1] (0: off)")


class SynthesisResult(NamedTuple):
    occluded: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    mask: torch.Tensor  # (B, 1, H, W) in {0, 1}
    info: list  # per image: list of dicts (occluder, category, anchored, matrix, coverage)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator of image `index` in `epoch`: reproducible from (seed, epoch, index)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    points `src` (k, 2) onto `dst` (k, 2), k >= 2. Returns a 3x3 matrix."""
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    ms, md = s.mean(), d.mean()
    sc, dc = s - ms, d - md
    denom = (np.abs(sc) ** 2).sum()
    a = (np.conj(sc) * dc).sum() / denom if denom > 1e-9 else 1.0 + 0j
    t = md - a * ms
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag], [0.0, 0.0, 1.0]])


def _T(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _RS(angle: float, scale: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class _FaceFrame(NamedTuple):
    """The face frame of a placement, from the five landmarks: origin `em` (the eye
    midpoint), `e1` along the eye line (angle `phi`), `e2` down the face, unit `E` (the eye
    distance, at least a tenth of the image)."""

    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right
    le: np.ndarray
    re: np.ndarray
    nose: np.ndarray
    em: np.ndarray
    mm: np.ndarray  # mouth centre
    E: float
    phi: float
    e1: np.ndarray
    e2: np.ndarray


def _face_frame(landmarks: np.ndarray, image_size: int) -> _FaceFrame:
    L = np.asarray(landmarks, np.float64).reshape(5, 2)
    le, re, nose, ml, mr = L
    eye_vec = re - le
    E = max(float(np.hypot(*eye_vec)), 0.1 * image_size)
    phi = math.atan2(eye_vec[1], eye_vec[0])
    e1 = np.array([math.cos(phi), math.sin(phi)])
    e2 = np.array([-math.sin(phi), math.cos(phi)])  # points down the face
    return _FaceFrame(L, le, re, nose, (le + re) / 2, (ml + mr) / 2, E, phi, e1, e2)


class _Shape(NamedTuple):
    """An object after the shape variation: whether it is flipped, the variation matrix `V`
    (about the bbox centre `cx`, `cy`) and the varied bbox width `w` and height `h`."""

    flip: bool
    V: np.ndarray
    cx: float
    cy: float
    w: float
    h: float


def _random_face_point(rng: np.random.Generator, f: _FaceFrame) -> np.ndarray:
    """An "anywhere" object's target: an eye, the nose, the mouth, the eye midpoint, the
    forehead, a cheek or the chin (one draw)."""
    E, e2 = f.E, f.e2
    points = [f.le, f.re, f.nose, f.mm, f.em, f.em - 0.8 * E * e2, f.le + 0.9 * E * e2, f.re + 0.9 * E * e2,
              f.mm + 0.7 * E * e2]
    return points[int(rng.integers(len(points)))]


def _category_target(rng: np.random.Generator, category: str, f: _FaceFrame) -> np.ndarray:
    """Where the category default puts an object. One draw whatever the category (the side
    of a vertical object), so the draws that follow do not depend on the category."""
    E, e1, e2 = f.E, f.e1, f.e2
    side = 1 if rng.random() < 0.5 else -1
    return {
        "eyes": f.em,
        "upper_face": f.em + 0.25 * E * e2,
        "nose": f.nose,
        "mouth": f.mm,
        "lower_face": f.mm + 0.15 * E * e2,
        "forehead": f.em - 0.3 * E * e2,
        "vertical": f.em + side * 0.55 * E * e1 + 1.0 * E * e2,
    }[category]


class OcclusionSynthesizer:
    """Occlude batches of faces with occluders from `library`.

    library:       OccluderLibrary to draw from (uniformly).
    image_size:    face size in pixels (square).
    canvas_size:   resolution of the occluder bank (each object fit into canvas x canvas).
    supersample:   render at this factor and average-pool (anti-aliased edges).
    num_occluders: (min, max) objects per image.
    placement:     Placement ranges.
    """

    def __init__(
        self,
        library: OccluderLibrary,
        *,
        image_size: int = 128,
        canvas_size: int = 128,
        supersample: int = 2,
        num_occluders: tuple[int, int] = (1, 1),
        placement: Placement | None = None,
    ):
        if len(library) == 0:
            raise ValueError("OcclusionSynthesizer needs a non-empty occluder library")
        self.library = library
        self.image_size = int(image_size)
        self.canvas_size = int(canvas_size)
        self.supersample = max(1, int(supersample))
        self.num_occluders = (int(num_occluders[0]), int(num_occluders[1]))
        if not 0 <= self.num_occluders[0] <= self.num_occluders[1] or self.num_occluders[1] < 1:
            raise ValueError(f"num_occluders must be (min, max) with 0 <= min <= max, max >= 1; got {num_occluders}")
        self.placement = placement or Placement()
        # geometry of each object, computed once
        self._bbox = np.array([o.bbox for o in library], np.float64)
        self._anchors = [o.anchors for o in library]
        self._base_cache: dict[str, list[torch.Tensor]] = {}

    def __getstate__(self):  # DataLoader workers: rebuild caches in the worker
        state = dict(self.__dict__)
        state["_base_cache"] = {}
        return state

    # ------------------------------------------------------------ sampling
    def sample_placement(self, rng: np.random.Generator, landmarks: np.ndarray, index: int | None = None) -> dict:
        """Draw one occluder and its transform for a face with `landmarks` (5, 2).

        Returns {"index", "matrix" (3x3, cut-out px -> face px), "category", "anchored"}.
        The draws come from `rng` in a fixed order (occluder, shape variation, category
        default, jitter), so a Generator seeded alike gives the same placement.
        """
        i = int(rng.integers(len(self.library))) if index is None else int(index)
        occ = self.library[i]
        face = _face_frame(landmarks, self.image_size)
        shape = self._shape_variation(rng, i)
        fit = self._anchor_fit(i, shape, face)
        anchored = fit is not None
        if anchored:
            M, pivot = fit
            rot_range = self.placement.rotation_jitter
        else:
            M, pivot, rot_range = self._category_placement(rng, occ.category, shape, face)
        J = self._jitter(rng, pivot, face.E, rot_range)
        return {"index": i, "matrix": J @ M, "category": occ.category, "anchored": anchored}

    def _shape_variation(self, rng: np.random.Generator, i: int) -> _Shape:
        """Step 1: random horizontal flip and aspect stretch of object `i` about its bbox centre."""
        p = self.placement
        x0, y0, x1, y1 = self._bbox[i]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        flip = bool(p.flip and rng.random() < 0.5)
        aspect = math.exp(rng.uniform(-p.aspect_jitter, p.aspect_jitter)) if p.aspect_jitter > 0 else 1.0
        V = _T(cx, cy) @ np.diag([(-1.0 if flip else 1.0) * aspect, 1.0 / aspect, 1.0]) @ _T(-cx, -cy)
        return _Shape(flip, V, cx, cy, (x1 - x0) * aspect, (y1 - y0) / aspect)

    def _anchor_fit(self, i: int, shape: _Shape, face: _FaceFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """Step 2 for objects with >= 2 anchors (left/right swapped when flipped): the similarity
        fit of the varied anchors onto the matching landmarks, as (matrix, pivot); None for
        objects placed by their category. Draws nothing."""
        anchors = {(_SWAP.get(k, k) if shape.flip else k): v for k, v in self._anchors[i].items()}
        names = [n for n in LANDMARK_NAMES if n in anchors]
        if len(names) < 2:
            return None
        V = shape.V
        src = np.array([anchors[n] for n in names], np.float64)
        src = (V[:2, :2] @ src.T).T + V[:2, 2]
        dst = np.array([face.landmarks[LANDMARK_NAMES.index(n)] for n in names])
        return similarity_fit(src, dst) @ V, dst.mean(0)

    def _category_placement(self, rng: np.random.Generator, category: str, shape: _Shape,
                            face: _FaceFrame) -> tuple[np.ndarray, np.ndarray, float]:
        """Step 2 for objects without anchors: the category default (module docstring), as
        (matrix, pivot, rotation jitter range in degrees)."""
        p = self.placement
        w, h = shape.w, shape.h
        rot_range = p.rotation_jitter
        if category == "anywhere":
            target = _random_face_point(rng, face)
            measure, size = "sqrtarea", rng.uniform(*p.anywhere_size)
            rot_range = p.anywhere_rotation
        else:
            measure, size = _CATEGORY_SIZE[category]
            target = _category_target(rng, category, face)
            if category == "eyes" and w < 1.5 * h:  # not glasses-shaped: a patch over one eye
                target, size = (face.le if rng.random() < 0.5 else face.re), 1.1
        obj = {"width": w, "height": h, "sqrtarea": math.sqrt(w * h)}[measure]
        scale = size * face.E / max(obj, 1e-6)
        # the point of the object that goes to the target: its centre, or for
        # forehead objects (hats) the middle of its bottom edge, which sits on the brows
        ref_y = shape.cy + h / 2 if category == "forehead" else shape.cy
        pivot = np.asarray(target, np.float64)
        return _T(*pivot) @ _RS(face.phi, scale) @ _T(-shape.cx, -ref_y) @ shape.V, pivot, rot_range

    def _jitter(self, rng: np.random.Generator, pivot: np.ndarray, E: float, rot_range: float) -> np.ndarray:
        """Step 3: random rotation (+-`rot_range` degrees) and scale about `pivot`, then an offset
        in units of the eye distance `E`."""
        p = self.placement
        ang = math.radians(rng.uniform(-rot_range, rot_range))
        sc = rng.uniform(1 - p.scale_jitter, 1 + p.scale_jitter)
        off = rng.uniform(-p.offset_jitter, p.offset_jitter, size=2) * E
        return _T(*(pivot + off)) @ _RS(ang, sc) @ _T(-pivot[0], -pivot[1])

    # ------------------------------------------------------------ rendering
    def _theta(self, placements: Sequence[dict], bank) -> torch.Tensor:
        """affine_grid thetas: output normalised coords -> bank canvas normalised coords."""
        n = self.image_size
        S = bank.canvas_size
        M1 = np.array([[n / 2, 0, n / 2], [0, n / 2, n / 2], [0, 0, 1.0]])  # out_n -> out px
        M3 = np.array([[2 / S, 0, -1], [0, 2 / S, -1], [0, 0, 1.0]])  # canvas px -> canvas_n
        out = np.empty((len(placements), 2, 3), np.float64)
        for b, pl in enumerate(placements):
            i = pl["index"]
            Mb = np.array([[bank.scale[i], 0, bank.offset[i, 0]], [0, bank.scale[i], bank.offset[i, 1]], [0, 0, 1.0]])
            out[b] = (M3 @ Mb @ np.linalg.inv(pl["matrix"]) @ M1)[:2]
        return torch.from_numpy(out)

    def _bases(self, device) -> list[torch.Tensor]:
        """Homogeneous output-pixel coordinates (1, H*W, 3), one per supersampling offset."""
        key = str(device)
        if key not in self._base_cache:
            n, ss = self.image_size, self.supersample
            offsets = [((i + 0.5) / ss - 0.5, (j + 0.5) / ss - 0.5) for j in range(ss) for i in range(ss)]
            centres = (torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1
            bases = []
            for dx, dy in offsets:
                xs, ys = centres + dx * 2 / n, centres + dy * 2 / n
                grid = torch.stack([xs.view(1, n).expand(n, n), ys.view(n, 1).expand(n, n), torch.ones(n, n)], -1)
                bases.append(grid.view(1, n * n, 3).to(device))
            self._base_cache[key] = bases
        return self._base_cache[key]

    def render(self, placements: Sequence[dict], device: str | torch.device = "cpu") -> torch.Tensor:
        """Warp the placed occluders: (B, 4, H, W) premultiplied RGB in [0, 1] and alpha.

        Supersampling: the mean of `supersample**2` bilinear samples at sub-pixel offsets
        (the same as rendering at that factor and average-pooling, at a fraction of the cost).
        """
        bank = self.library.bank(self.canvas_size, device)
        idx = torch.tensor([pl["index"] for pl in placements]).to(bank.rgba.device, non_blocking=True)  # no GPU sync
        src = bank.rgba.index_select(0, idx)
        theta_t = self._theta(placements, bank).to(device=src.device, non_blocking=True).to(src.dtype).transpose(1, 2)
        n, b = self.image_size, len(placements)
        out = None
        for base in self._bases(src.device):
            grid = torch.matmul(base, theta_t).view(b, n, n, 2)
            w = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out = w if out is None else out.add_(w)
        if self.supersample > 1:
            out.mul_(1.0 / self.supersample**2)
        return out

    def recoloured(self, w: torch.Tensor, rngs: Sequence) -> torch.Tensor:
        """Occluder colour augmentation (``recolour``; training only): each warped occluder ``w``
        (B, 4, H, W, premultiplied RGB and alpha) whose generator is given has, by chance, its
        colour channels shuffled and scaled (gains 0.3-1.7), its shape kept."""
        rgb, a = w[:, :3].clone(), w[:, 3:4]
        for b, r in enumerate(rngs):
            if r is not None and r.random() < self.placement.recolour:
                perm, gain = r.permutation(3).tolist(), r.uniform(0.3, 1.7, 3)
                rgb[b] = torch.minimum(torch.stack([rgb[b, c] * float(k) for c, k in zip(perm, gain)]), a[b])
        return torch.cat([rgb, a], 1)

    def occlude_photo(self, photo: np.ndarray, placements: Sequence[dict]) -> np.ndarray:
        """A square (S, S, 3) uint8 ``photo`` (S = ``image_size``) with ``placements``
        (matrices from cut-out to photo pixels) composited one over the other, as uint8: how
        the benchmarks and scripts occlude whole photos."""
        if photo.shape[:2] != (self.image_size, self.image_size):
            raise ValueError(f"occlude_photo: a {self.image_size}x{self.image_size} photo, got {photo.shape}")
        out = torch.from_numpy(np.array(photo, dtype=np.uint8)).permute(2, 0, 1).double() / 255.0  # a copy: photos may be read-only
        for pl in placements:
            w = self.render([pl])[0].double()
            out = out * (1 - w[3:4]) + w[:3]
        return np.rint(out.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    def __call__(
        self,
        clean: torch.Tensor,
        landmarks: np.ndarray | torch.Tensor | Sequence[np.ndarray],
        rngs: Sequence[np.random.Generator],
    ) -> SynthesisResult:
        """Occlude `clean` (B, 3, H, W) in [-1, 1] given per-image landmarks (B, 5, 2) and Generators."""
        if clean.dim() != 4 or clean.shape[1] != 3 or clean.shape[-1] != self.image_size or clean.shape[-2] != self.image_size:
            raise ValueError(f"clean must be (B, 3, {self.image_size}, {self.image_size}), got {tuple(clean.shape)}")
        B = clean.shape[0]
        if len(rngs) != B:
            raise ValueError(f"need one Generator per image: {len(rngs)} for a batch of {B}")
        if isinstance(landmarks, torch.Tensor):
            landmarks = landmarks.detach().cpu().numpy()
        lms = [np.asarray(l, np.float64) for l in landmarks]
        p = self.placement
        counts = [int(r.integers(self.num_occluders[0], self.num_occluders[1] + 1)) for r in rngs]
        out = clean.clone()
        mask = torch.zeros(B, 1, self.image_size, self.image_size, device=clean.device, dtype=clean.dtype)
        info: list[list[dict]] = [[] for _ in range(B)]
        for slot in range(max(counts) if counts else 0):
            todo = [b for b in range(B) if counts[b] > slot]
            placements = {b: self.sample_placement(rngs[b], lms[b]) for b in todo}
            accepted: dict[int, tuple[dict, torch.Tensor, float]] = {}
            pending, tries = todo, 0
            while pending:
                warped = self.render([placements[b] for b in pending], clean.device)
                cov = (warped[:, 3] > p.mask_threshold).float().mean(dim=(1, 2)).tolist()
                again = []
                for k, b in enumerate(pending):
                    ok = p.min_coverage <= cov[k] <= p.max_coverage
                    if ok or tries + 1 >= p.max_tries:
                        accepted[b] = (placements[b], warped[k], cov[k])
                    else:
                        placements[b] = self.sample_placement(rngs[b], lms[b])
                        again.append(b)
                pending, tries = again, tries + 1
            empty = torch.zeros_like(accepted[todo[0]][1])  # alpha 0: the whole batch at once, no index tensor
            w = torch.stack([accepted[b][1] if b in accepted else empty for b in range(B)]).to(clean.dtype)
            if p.recolour > 0:
                w = self.recoloured(w, [rngs[b] if b in accepted else None for b in range(B)])
            a = w[:, 3:4]
            out = out * (1 - a) + (2 * w[:, :3] - a)
            mask = torch.maximum(mask, (a > p.mask_threshold).to(clean.dtype))
            for b in todo:
                pl, _, c = accepted[b]
                info[b].append(
                    {
                        "occluder": self.library[pl["index"]].name,
                        "category": pl["category"],
                        "anchored": pl["anchored"],
                        "matrix": [[round(float(v), 4) for v in row] for row in pl["matrix"][:2]],
                        "coverage": round(float(c), 4),
                    }
                )
        return SynthesisResult(out.clamp_(-1, 1), mask, info)
