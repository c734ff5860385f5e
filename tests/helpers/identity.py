"""Similarities of face features by identity."""

from __future__ import annotations

import numpy as np


def genuine_impostor(features, ids):
    """Cosine similarities of every same-identity pair and every different-identity pair of
    unit ``features`` (N, D) with labels ``ids`` (N,): (genuine, impostor) numpy arrays."""
    sim = (features @ features.T).numpy()
    iu = np.triu_indices(len(ids), 1)
    same = np.asarray(ids)[iu[0]] == np.asarray(ids)[iu[1]]
    return sim[iu][same], sim[iu][~same]
