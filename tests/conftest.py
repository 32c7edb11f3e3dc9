"""Shared fixtures.  Real data lives beside the project (``../shared/data``) and never in it."""

from __future__ import annotations

from pathlib import Path

import pytest

import seabed_hmc  # noqa: F401  (first: its start-up fixes let timm and torchvision import on this machine)

#: The shared real-data folder, resolved relative to this repository (see shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_path(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or skip the calling test (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives beside the project, not in it)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; tests using it skip cleanly where it is absent."""
    return shared_data_path()


@pytest.fixture(autouse=True, scope="session")
def _isolated_feature_cache(tmp_path_factory):
    """Runs that do not name a cache folder use a per-session one, never the user's ~/.cache."""
    import os

    previous = os.environ.get("SEABED_HMC_CACHE")
    os.environ["SEABED_HMC_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if previous is None:
        os.environ.pop("SEABED_HMC_CACHE", None)
    else:
        os.environ["SEABED_HMC_CACHE"] = previous
