from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """../shared/data as AUXOPT_DATA; skips where the shared data is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA}")
    monkeypatch.setenv("AUXOPT_DATA", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def data_dir(monkeypatch) -> Path:
    """../shared/data (with its PROVENANCE.md) as AUXOPT_DATA; skips where it is absent."""
    if not (SHARED_DATA / "PROVENANCE.md").is_file():
        pytest.skip(f"the real datasets are not available: {SHARED_DATA} (../shared/data) does not exist")
    monkeypatch.setenv("AUXOPT_DATA", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="session")
def suite():
    from auxopt.tasks import make_synthetic_suite

    return make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=1, n_train=300, n_aux_train=600, n_dev=200, n_test=200
    )


def pytest_configure(config) -> None:
    """Under pytest-xdist, share the cores among the workers: torch's own choice (every core in each
    worker) oversubscribes them, which makes a parallel suite slower than a serial one."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
