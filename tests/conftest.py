"""Shared test set-up: a sane thread count, offline hubs, no API key from the shell, and the path
to ../shared/data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The servers read their API key from PRM_API_KEY when none is given: a key in the developer's
# shell would make every test server (and every `prm serve-reward` a test starts) answer 401.
# Tests that want a key set it themselves (monkeypatch, or a subprocess's env).
os.environ.pop("PRM_API_KEY", None)

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
