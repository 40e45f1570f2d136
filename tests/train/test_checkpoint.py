"""Weights files: strict, safe loading; corrupt files reported; checkpoint folders atomic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tasgen.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_safetensors_round_trip(tmp_path):
    src, dst = _model(), nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    save_weights(src.state_dict(), tmp_path / "w.safetensors")
    load_weights(dst, tmp_path / "w.safetensors")
    for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_torch_file_plain_or_wrapped(tmp_path, wrap):
    src, dst = _model(), nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    sd = src.state_dict()
    torch.save(sd if wrap is None else {wrap: sd, "epoch": 3}, tmp_path / "w.pt")
    load_weights(dst, tmp_path / "w.pt")
    assert torch.equal(dst[0].weight, src[0].weight)


def test_mismatch_lists_keys_and_leaves_model_untouched(tmp_path):
    src = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(2, 2))
    dst = _model()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    save_weights(src.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_weights(dst, tmp_path / "w.safetensors", what="teacher")
    message = str(err.value)
    for part in ("teacher", "missing (1.running_mean", "2 unexpected", "2.weight", "1.weight (2, 3) vs (3,)"):
        assert part in message
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file_is_reported(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(_model().state_dict(), path)
    else:
        save_weights(_model().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_weights(_model(), path)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": _model().state_dict(), "obj": _model()}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="Python objects"):
        load_weights(_model(), tmp_path / "w.pt")


def test_checkpoint_folder_replaced_atomically(tmp_path):
    folder = tmp_path / "last"
    save_checkpoint(folder, {"student": {"w": torch.ones(2)}}, {"epoch": 1})
    save_checkpoint(folder, {"student": {"w": torch.zeros(2)}}, {"epoch": 2})
    parts, state = load_checkpoint(folder)
    assert state["epoch"] == 2 and torch.equal(parts["student"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    # A crash between the two renames leaves last.old: it is still found.
    folder.rename(tmp_path / "last.old")
    assert find_checkpoint(folder) == tmp_path / "last.old"


def test_shared_storage_is_written(tmp_path):
    w = torch.randn(3, 3)
    save_weights({"a": w, "b": w, "c": w[0]}, tmp_path / "w.safetensors")
    from safetensors.torch import load_file

    loaded = load_file(tmp_path / "w.safetensors")
    assert torch.equal(loaded["b"], w) and torch.equal(loaded["c"], w[0])
