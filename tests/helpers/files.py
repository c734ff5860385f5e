"""Paths the tests read and a folder's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]   # the repository root: configs/, scripts/, fsggan/
SHARED = REPO.parent / "shared" / "data"     # ../shared/data: real LFW, occluders, weights (never in the repo)


def need(path: Path, what: str = "shared data") -> None:
    """Skip the calling test when ``path`` (usually under :data:`SHARED`) does not exist."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (expected ../shared/data next to the repository)")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes: equal snapshots mean nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
