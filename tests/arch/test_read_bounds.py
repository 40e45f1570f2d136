"""Reading a stage table is bounded: linear work in a model's depth, and a size limit checked before tracing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tasgen.arch import size
from tasgen.arch.introspect import read_stage_table
from tasgen.arch.models import create_timm_model
from tasgen_cli.app import app

ROOT = Path(__file__).resolve().parents[2]


def _vit(depth: int) -> nn.Module:
    with torch.device("meta"):
        return create_timm_model("vit_tiny_patch16_224", image_size=32, embed_dim=24, depth=depth, num_heads=2,
                                 num_classes=3)


def _module_visits(model: nn.Module) -> int:
    """Modules the reader walks through ``model.named_modules()`` / ``model.modules()`` while reading it."""
    visits = 0
    walk = model.named_modules

    def counting(*args: object, **kwargs: object) -> Iterator[tuple[str, nn.Module]]:
        nonlocal visits
        for item in walk(*args, **kwargs):
            visits += 1
            yield item

    model.named_modules = counting  # type: ignore[method-assign]
    read_stage_table(model, name="vit", source="timm", image_size=32)
    return visits


def test_reading_walks_the_model_a_fixed_number_of_times() -> None:
    # A walk of the module tree per feature_info entry made reading quadratic in depth
    # (ViT depth 100/200/400: 11.5/19/41 s). Four times the depth may cost four times the walk, not sixteen.
    shallow, deep = _vit(4), _vit(16)
    ratio = _module_visits(deep) / _module_visits(shallow)
    modules = sum(1 for _ in deep.modules()) / sum(1 for _ in shallow.modules())
    assert ratio <= 1.2 * modules, (ratio, modules)


def test_a_model_too_large_to_read_is_refused_while_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # depth=100000 built for minutes and grew past 5 GB before any reading began.
    monkeypatch.setattr(size, "MAX_READ_MODULES", 300)
    spec = str(ROOT / "specs" / "quickstart.yaml")
    result = CliRunner().invoke(app, ["plan", spec, "--no-cache", "--set", "student.kwargs.depth=100000"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr
    assert "quickstart.yaml:" in message and "student.timm: vit_tiny_patch16_224 is too large to read" in message
    assert "passed 300 modules" in message and "at most 300" in message and "parameters so far" in message


def test_the_limit_follows_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(size, "available_memory", lambda: 40 * size.BYTES_PER_MODULE)
    assert size.read_limit() == (40, 40 * size.BYTES_PER_MODULE)
    with pytest.raises(size.ModelTooLargeError, match=r"at most 40, what 0\.6 MiB of free memory holds"):
        with size.bounded_build("vit"):
            _vit(8)
    _vit(8)  # the count stops with the block
    monkeypatch.setattr(size, "available_memory", lambda: None)
    assert size.read_limit() == (size.MAX_READ_MODULES, None)
