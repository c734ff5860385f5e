"""Shared pytest hooks: tests marked ``cuda`` need a CUDA device and skip, with one reason,
where torch sees none (``pytest -m cuda`` selects them; scripts/gpu_check.py runs them)."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
