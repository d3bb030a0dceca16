import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("UNIREPCLIP_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (set UNIREPCLIP_FIXTURES)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
