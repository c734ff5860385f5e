"""What the test modules share: where the repository and the shared data are, a skip for
missing shared data, a fixture that runs torch on one thread, and the ``cuda`` marker: tests
marked ``cuda`` need a CUDA device and skip, with one reason, where torch sees none
(``pytest -m cuda`` selects them; scripts/gpu_check.py runs them).

Test modules import the constants (``from conftest import REPO, SHARED, need``: pytest puts
tests/ on ``sys.path``) and opt into the fixture with
``pytestmark = pytest.mark.usefixtures("one_thread")``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]   # the repository root: configs/, scripts/, fsggan/
SHARED = REPO.parent / "shared" / "data"     # ../shared/data: real LFW, occluders, weights (never in the repo)


def need(path: Path, what: str = "shared data") -> None:
    """Skip the calling test when ``path`` (usually under :data:`SHARED`) does not exist."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (expected ../shared/data next to the repository)")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one torch thread is faster and steadier on a shared CPU. Module scope,
    so that module-scoped fixtures (a trained Stage I run) run under it too."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def genuine_impostor(features, ids):
    """Cosine similarities of every same-identity pair and every different-identity pair of
    unit ``features`` (N, D) with labels ``ids`` (N,): (genuine, impostor) numpy arrays."""
    import numpy as np

    sim = (features @ features.T).numpy()
    iu = np.triu_indices(len(ids), 1)
    same = np.asarray(ids)[iu[0]] == np.asarray(ids)[iu[1]]
    return sim[iu][same], sim[iu][~same]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
