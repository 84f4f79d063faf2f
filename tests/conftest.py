"""Fixtures shared by several test files."""

from pathlib import Path

import pytest

from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic


@pytest.fixture(scope="session")
def dataset20(tmp_path_factory) -> Path:
    """20 synthetic samples with the defaults a user gets (320x240), built once per test session."""
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    run_build(root, plan_synthetic(SyntheticOptions(), 20, 3), workers=2, progress=False)
    return root
