"""Shared fixtures: where the shipped model and the optional corpus are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "models" / "vadstream.onnx"
SHARED_DATA = Path(os.environ.get("VADSTREAM_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not SHIPPED_MODEL.is_file():
        pytest.fail(f"shipped model missing: {SHIPPED_MODEL}")
    return SHIPPED_MODEL


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "dev").is_dir():
        pytest.skip(f"corpus not found at {SHARED_DATA} (set VADSTREAM_DATA or put ../shared/data beside the repo)")
    return SHARED_DATA
