"""The stage-table cache: where it lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasgen.arch import cache
from tasgen.arch.table import Head, Part, Stage, StageTable


def _table() -> StageTable:
    stem = Part(modules=["conv1"], channels=8, reduction=2, layout="NCHW")
    stage = Stage(modules=["layer1"], channels=8, reduction=2, layout="NCHW", index=1, mixer="conv", depth=1)
    head = Head(final_modules=[], feature_channels=8, feature_layout="NCHW", num_features=8, num_classes=10,
                params=90)
    return StageTable(model="m", source="timm", family="F", input_size=(3, 32, 32), mean=(0.5,) * 3,
                      std=(0.5,) * 3, stem=stem, stages=[stage], head=head, params=100)


def test_tilde_in_the_cache_variable_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TASGEN_CACHE_DIR", "~/tasgen-cache")
    cache.store_table("k", _table())
    assert (tmp_path / "tasgen-cache" / "tables" / "k.json").is_file()  # not ./~/tasgen-cache
    assert not Path("~").exists()
    assert cache.load_table("k") == _table()
