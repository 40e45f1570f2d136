"""Weights and training checkpoints on disk: safe to load, written atomically.

A checkpoint is a folder (``last/`` or ``best/`` of a run) holding

- ``model.safetensors``: the trainable state, one prefix per part
  (``student.``, ``assistant.``, ``objective.``, ``branches.``, ``ema.``, ...);
- ``state.pt``: optimizer, schedule, counters, RNG states and the plan hash, made of
  tensors, numbers, strings, lists and dicts only, so ``torch.load(weights_only=True)``
  reads it.

Every file is written to a temporary name in its folder, fsynced, then renamed over
the target; a folder is written as ``<name>.tmp/`` and renamed into place, so a crash
leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
_TORCH_WRAPPERS = ("state_dict", "model")
_SHOWN = 8  # keys listed in a mismatch message


class CheckpointError(Exception):
    """A weights or checkpoint file that cannot be used; the message says which and why."""


# ------------------------------------------------------------------ atomic files
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------ weights files
def save_weights(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> None:
    """Write tensors as safetensors, atomically.

    safetensors refuses tensors that share storage; a tensor whose storage was
    already written is cloned, so views and tied weights are stored as copies.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    plain: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        t = value.detach().cpu()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        plain[key] = t.contiguous()
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=dict(metadata or {}))


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors`` or a torch file (``weights_only=True``).

    A torch file may hold the state_dict itself or wrap it as ``{"state_dict": ...}``
    or ``{"model": ...}``.

    Raises:
        CheckpointError: the file is missing, corrupt, truncated, holds Python objects
            (not only tensors), or holds no state_dict.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"weights file not found: {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{file} is corrupt or truncated (safetensors: {_first_line(exc)})") from None
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                f"{file} holds Python objects besides tensors, which tasgen does not unpickle "
                "(it could run code). Save a plain state_dict: torch.save(model.state_dict(), path)."
            ) from None
        raise CheckpointError(f"{file} is corrupt ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{file} is corrupt or truncated ({_first_line(exc)})") from None
    if isinstance(data, Mapping):
        for key in _TORCH_WRAPPERS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"{file} holds no state_dict (expected a mapping of names to tensors, or one under "
            f"{' / '.join(repr(k) for k in _TORCH_WRAPPERS)})"
        )
    return dict(data)


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, what: str = "model") -> None:
    """Load a weights file into ``model``, strictly, and only if all of it fits.

    Keys and shapes are checked before anything is copied, so a mismatching file
    leaves the model untouched. A ``module.`` prefix (DDP checkpoints) is removed.

    Args:
        model: the model to fill.
        path: ``.safetensors`` or a torch file (see `read_weights`).
        what: how to call the model in messages, e.g. "teacher".

    Raises:
        CheckpointError: unreadable file, or missing / unexpected keys or wrong shapes.
    """
    state = read_weights(path)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    check_fits(model, state, f"{path}", what)
    model.load_state_dict(state, strict=True)


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """Raise a `CheckpointError` unless ``state`` has exactly ``model``'s keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape, file vs model ({_listing(shapes)})")
    raise CheckpointError(
        f"{source} does not fit the {what}: keys {'; '.join(parts)}. Is it a checkpoint of this "
        "model, with the same num_classes and kwargs?"
    )


# -------------------------------------------------------------- run checkpoints
def split_prefixes(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"student.a.b": t}`` -> ``{"student": {"a.b": t}}``."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".")
        parts.setdefault(prefix, {})[rest] = value
    return parts


def save_checkpoint(
    folder: str | os.PathLike[str],
    parts: Mapping[str, Mapping[str, torch.Tensor]],
    state: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a checkpoint folder atomically: ``<folder>.tmp/`` first, then renamed.

    Args:
        folder: the checkpoint folder, e.g. ``runs/x/last``.
        parts: one state_dict per prefix (each from its own module's ``state_dict()``,
            so a tensor shared between modules is written once per owner, never
            twice under one prefix).
        state: plain training state (tensors, numbers, strings, lists, dicts).
        metadata: strings stored in the safetensors header.
    """
    target = Path(folder)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    flat = {f"{prefix}.{k}": v for prefix, sd in parts.items() for k, v in sd.items()}
    save_weights(flat, tmp / WEIGHTS_FILE, metadata)
    with atomic_path(tmp / STATE_FILE) as f:
        torch.save(dict(state), f)
    # rename(2) cannot replace a non-empty folder: move the old one aside first.
    # `find_checkpoint` falls back to <name>.old when a crash hits between the renames.
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint at ``folder`` (or its ``.old`` left by a crash), or None."""
    target = Path(folder)
    for candidate in (target, target.with_name(target.name + ".old")):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / STATE_FILE).is_file():
            return candidate
    return None


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a checkpoint folder: ``(weights by prefix, state)``.

    Raises:
        CheckpointError: the folder is incomplete, or a file is corrupt or truncated.
    """
    found = find_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no complete checkpoint at {folder} (it needs {WEIGHTS_FILE} and {STATE_FILE})")
    weights = split_prefixes(read_weights(found / WEIGHTS_FILE))
    try:
        state = torch.load(found / STATE_FILE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{found / STATE_FILE} is corrupt or truncated ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{found / STATE_FILE} is not a tasgen training state")
    return weights, state


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
