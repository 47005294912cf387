"""Shared fixtures: the real data folder beside the repository and small synthetic data."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SYCOPHANCY_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (SST-2, MMLU, BIG-bench); tests skip nothing if it is missing: they fail."""
    assert DATA_DIR.is_dir(), f"shared data not found at {DATA_DIR}; set SYCOPHANCY_DATA_DIR"
    return DATA_DIR


@pytest.fixture(autouse=True)
def _no_remembered_results():
    """Each test starts with no train.py results remembered from another test's jobs."""
    from sycophancy.runs import memo

    memo.forget()
