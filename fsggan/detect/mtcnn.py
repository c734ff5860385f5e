"""The MTCNN cascade: image pyramid -> PNet proposals -> RNet -> ONet boxes and five landmarks.

Written for fsggan from the paper (Zhang et al. 2016) and the layout of the converted weights
(:mod:`fsggan.detect.mtcnn_nets`); the usual settings: pyramid factor 0.709, thresholds
0.6 / 0.7 / 0.7, IoU non-maximum suppression 0.5 within a scale and 0.7 across scales and after
RNet, and 0.7 "intersection over the smaller box" after ONet, which also drops a box nested in
a better one.

Boxes are continuous pixel edges (see :mod:`fsggan.detect.base`). The 24x24 and 48x48 crops of
the candidate boxes are cut in one call with ``torchvision.ops.roi_align`` (bilinear, several
samples averaged per output pixel, zero outside the image, as the original pads with black),
on raw pixel values normalised afterwards.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms, roi_align

from .base import DetectedFace
from .mtcnn_nets import load_nets

__all__ = ["MTCNN", "pyramid_scales", "nms_min"]

FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
CELL, STRIDE = 12, 2          # PNet's window and stride, in pyramid pixels
MAX_SAMPLES = 4               # roi_align samples per output pixel and axis (caps the cost of big boxes)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * (1.0 / 128.0)


def pyramid_scales(height: int, width: int, min_face: float, factor: float = FACTOR) -> list[float]:
    """Scales at which PNet's 12 px window covers faces from ``min_face`` px (at least 12) upwards."""
    s = CELL / max(float(min_face), float(CELL))
    scales, side = [], min(height, width) * s
    while side >= CELL:
        scales.append(s)
        s *= factor
        side *= factor
    return scales


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with overlap = intersection / smaller area (kept indices,
    best first). Used on ONet's few boxes, where it also removes a box inside another."""
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    order, keep = scores.argsort(descending=True), []
    while order.numel():
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = torch.maximum(boxes[i, :2], boxes[rest, :2])
        hi = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = (hi - lo).clamp(min=0).prod(dim=1)
        overlap = inter / torch.minimum(area[i], area[rest]).clamp(min=1e-9)
        order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.long)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply box regression (dx0, dy0, dx1, dy1) in units of the box's width and height."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + reg * wh


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box made square about its centre, side = its longer side."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([c - half, c + half], dim=1)


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` x ``size`` crops of ``boxes`` from ``image`` (1, 3, H, W) raw pixels, normalised."""
    side = float((boxes[:, 2] - boxes[:, 0]).max()) if len(boxes) else size
    samples = int(min(MAX_SAMPLES, max(1, math.ceil(side / size))))
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    return _normalise(roi_align(image, rois, (size, size), 1.0, samples, aligned=True))


class MTCNN:
    """``MTCNN()(image, min_face, max_side)`` -> list of :class:`DetectedFace` in ``image``'s pixels.

    ``weights``: folder with pnet.pt / rnet.pt / onet.pt (else $FSGGAN_MTCNN_WEIGHTS, else the
    installed facenet-pytorch's). ``max_side`` is accepted for the common detector signature;
    the pyramid never enlarges the image.
    """

    def __init__(self, weights: str | Path | None = None, thresholds=THRESHOLDS, factor: float = FACTOR):
        self.pnet, self.rnet, self.onet = load_nets(weights)
        self.thresholds, self.factor = tuple(thresholds), float(factor)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, min_face: float = 20, max_side: int | None = None) -> list[DetectedFace]:
        img = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]
        boxes = self.propose(img, min_face)
        if len(boxes):
            boxes = self.refine(img, boxes)
        if not len(boxes):
            return []
        boxes, scores, points = self.output(img, boxes)
        return [DetectedFace(box=tuple(b.tolist()), landmarks=p.numpy(), score=float(s))
                for b, s, p in zip(boxes, scores, points)]

    def propose(self, img: torch.Tensor, min_face: float) -> torch.Tensor:
        """Stage 1: PNet over the pyramid; square candidate boxes (K, 4) in image pixels."""
        h, w = img.shape[-2:]
        found = []
        for s in pyramid_scales(h, w, min_face, self.factor):
            hs, ws = max(CELL, math.ceil(h * s)), max(CELL, math.ceil(w * s))
            prob, reg = self.pnet(_normalise(F.interpolate(img, size=(hs, ws), mode="area")))
            iy, ix = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if not len(iy):
                continue
            x0, y0 = ix.float() * STRIDE, iy.float() * STRIDE
            boxes = torch.stack([x0 / (ws / w), y0 / (hs / h), (x0 + CELL) / (ws / w), (y0 + CELL) / (hs / h)], 1)
            score, delta = prob[0, iy, ix], reg[0][:, iy, ix].T
            keep = nms(boxes, score, 0.5)
            found.append(torch.cat([boxes[keep], score[keep, None], delta[keep]], 1))
        if not found:
            return torch.zeros(0, 4)
        cand = torch.cat(found)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        return _square(_regress(cand[:, :4], cand[:, 5:]))

    def refine(self, img: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: RNet on 24x24 crops keeps, regresses and squares the face candidates."""
        prob, reg = self.rnet(_crops(img, boxes, 24))
        ok = prob > self.thresholds[1]
        boxes, prob, reg = boxes[ok], prob[ok], reg[ok]
        keep = nms(boxes, prob, 0.7)
        return _square(_regress(boxes[keep], reg[keep]))

    def output(self, img: torch.Tensor, boxes: torch.Tensor):
        """Stage 3: ONet on 48x48 crops: final boxes, scores and (K, 5, 2) landmarks."""
        prob, reg, marks = self.onet(_crops(img, boxes, 48))
        ok = prob > self.thresholds[2]
        boxes, prob, reg, marks = boxes[ok], prob[ok], reg[ok], marks[ok]
        wh = boxes[:, 2:] - boxes[:, :2]
        points = torch.stack([boxes[:, :1] + wh[:, :1] * marks[:, :5], boxes[:, 1:2] + wh[:, 1:] * marks[:, 5:]], 2)
        boxes = _regress(boxes, reg)
        keep = nms_min(boxes, prob, 0.7)
        return boxes[keep], prob[keep], points[keep]
