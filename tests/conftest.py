"""Fixtures shared across the test folders."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasgen.spec.reference import EXAMPLE_SPEC

MINIMAL_SPEC = EXAMPLE_SPEC  # the spec reference's example: one spec for docs and tests

# `make test` runs one pytest-xdist worker per core: each worker, and every process it
# starts (CLI runs, torchrun ranks), gets one torch thread, or the workers' thread
# pools would fight over the same cores. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:  # imported by a plugin first
        sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start every worker on its share of the `slow` tests.

    pytest-xdist's worksteal gives worker i the i-th contiguous slice of the collected
    tests and lets an idle worker steal from the end of another's queue. A minutes-long
    test met last would run alone on one core while the other idles; so each slice
    begins with every W-th slow test (W workers, in collected order), and the other
    tests fill the slices in their collected order. Without xdist: slow tests first.
    """
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        items[:] = slow + rest
        return
    n, fill, ordered = len(items), iter(rest), []
    for w in range(workers):
        share = slow[w::workers]
        size = (w + 1) * n // workers - w * n // workers
        ordered += share + [next(fill) for _ in range(max(0, size - len(share)))]
    items[:] = ordered + list(fill)


@pytest.fixture
def minimal_spec() -> str:
    """The text of a small valid spec (timm teacher, stage-described student)."""
    return MINIMAL_SPEC


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write ``text`` to ``tmp_path / name`` (folders created) and return the path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True, scope="session")
def _tasgen_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep tasgen's caches (timm's model names) out of the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TASGEN_CACHE_DIR", str(tmp_path_factory.mktemp("tasgen-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def teacher_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own teacher store (in this process), so no test reuses another's fitted teacher."""
    import tasgen.teacher_store

    root = tmp_path_factory.mktemp("teachers")
    monkeypatch.setattr(tasgen.teacher_store, "cache_dir", lambda: root)
    monkeypatch.setenv("TASGEN_TEACHER_STORE", str(root / "teachers"))  # study workers and CLI runs too
    return root / "teachers"
