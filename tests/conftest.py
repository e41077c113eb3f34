"""Shared test set-up: a sane thread count, offline hubs, and the path to ../shared/data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # one thread per test process: the machine has 2 cores shared with everything else
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"real data expected at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA
