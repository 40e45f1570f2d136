"""Weights and training checkpoints on disk: safe to load, written atomically.

A checkpoint is a folder (``last/`` or ``best/`` of a run) holding

- ``model.safetensors``: the trainable state, one prefix per part
  (``student.``, ``assistant.``, ``objective.``, ``branches.``, ``ema.``, ...);
- ``state.pt``: optimizer, schedule, counters, RNG states and the plan hash, made of
  tensors, numbers, strings, lists and dicts only, so ``torch.load(weights_only=True)``
  reads it;
- ``metrics.jsonl``: the metrics rows of the epochs it holds (a run's ``last/`` and
  ``best/``), so a checkpoint and its rows are committed together;
- ``manifest.json``: the size and sha256 of every other file, and the epoch; loading
  verifies them, so a flipped byte is refused instead of silently used.

Every file is written to a temporary name in its folder, fsynced, then renamed over
the target; a folder is written as ``<name>.tmp/`` and renamed into place, so a crash
leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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
MANIFEST_FILE = "manifest.json"
"""Lists every file of a checkpoint with its size and sha256, plus the epoch it holds."""
MANIFEST_FORMAT = 1
_HASH_CHUNK = 1 << 20


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
    *,
    files: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> int:
    """Write a checkpoint folder atomically: ``<folder>.tmp/`` first, then renamed.

    Every file is fsynced and listed with its sha256 in ``manifest.json``, written
    last; the folder is fsynced before the rename, and the parent after it.

    Args:
        folder: the checkpoint folder, e.g. ``runs/x/last``.
        parts: one state_dict per prefix (each from its own module's ``state_dict()``,
            so a tensor shared between modules is written once per owner, never
            twice under one prefix).
        state: plain training state (tensors, numbers, strings, lists, dicts).
        metadata: strings stored in the safetensors header.
        files: further text files to hold, by name (e.g. the metrics rows so far).
        info: JSON values recorded in the manifest (e.g. ``epoch``, ``best_epoch``).

    Returns:
        The bytes written.

    Raises:
        OSError: the write failed (e.g. the disk is full); ``<folder>.tmp/`` is removed
            and ``folder`` is left as it was.
    """
    target = Path(folder)
    tmp = _sibling(target, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        flat = {f"{prefix}.{k}": v for prefix, sd in parts.items() for k, v in sd.items()}
        save_weights(flat, tmp / WEIGHTS_FILE, metadata)
        with atomic_path(tmp / STATE_FILE) as f:
            torch.save(dict(state), f)
        for name, text in (files or {}).items():
            atomic_write_text(tmp / name, text)
        names = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("."))
        manifest = {
            "format": MANIFEST_FORMAT,
            **dict(info or {}),
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)} for name in names},
        }
        atomic_write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
        _fsync_dir(tmp)
        written = sum(p.stat().st_size for p in tmp.iterdir())
        _commit(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # Ctrl-C or a full disk: no half checkpoint stays
        raise
    return written


def link_checkpoint(source: str | os.PathLike[str], folder: str | os.PathLike[str]) -> None:
    """Make ``folder`` a copy of the checkpoint ``source``, atomically (``best/`` from ``last/``).

    Checkpoint files are never modified once written, so hard links stand in for
    copies (no extra disk space); a file system without hard links gets copies.
    """
    src, target = Path(source), Path(folder)
    tmp = _sibling(target, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for file in src.iterdir():
            try:
                os.link(file, tmp / file.name)
            except OSError:
                shutil.copy2(file, tmp / file.name)
                with open(tmp / file.name, "rb+") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        _commit(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


def _commit(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` over ``target``: the moment the new checkpoint becomes the checkpoint."""
    old = _sibling(target, ".old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)  # a crash between the renames below: adopt the old one first
    shutil.rmtree(old, ignore_errors=True)
    # rename(2) cannot replace a non-empty folder: move the old one aside first.
    # `find_checkpoint` falls back to <name>.old when a crash hits between the renames.
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(folder: str | os.PathLike[str]) -> None:
    """Tidy what an interrupted save left at ``folder``: drop ``.tmp``, adopt or drop ``.old``.

    Only the run's single writer may call this (it holds the run folder's lock).
    """
    target = Path(folder)
    shutil.rmtree(_sibling(target, ".tmp"), ignore_errors=True)
    old = _sibling(target, ".old")
    if old.is_dir():
        if not target.exists():
            os.replace(old, target)
            _fsync_dir(target.parent)
        else:
            shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder at ``folder`` (or its ``.old`` left by a crash), or None.

    The folder is not checked; `verify_checkpoint` does that.
    """
    target = Path(folder)
    for candidate in (target, _sibling(target, ".old")):
        if candidate.is_dir():
            return candidate
    return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's ``manifest.json``, unverified.

    Raises:
        CheckpointError: missing or unreadable.
    """
    file = Path(folder) / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{folder} has no {MANIFEST_FILE}: the checkpoint was not completely written (or by a "
            "tasgen without integrity records); it cannot be trusted. Use the other checkpoint of "
            "the run, or start the run over with --overwrite."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt ({_first_line(exc)})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("bytes"), int)
        for v in files.values()
    ):
        raise CheckpointError(f"{file} is corrupt (no list of files with sizes and sha256)")
    return manifest


def verify_checkpoint(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of a checkpoint against the sha256 in its manifest.

    Returns:
        The manifest.

    Raises:
        CheckpointError: naming the missing, changed or unlisted file.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    files = manifest["files"]
    for required in (WEIGHTS_FILE, STATE_FILE):
        if required not in files:
            raise CheckpointError(f"{root / MANIFEST_FILE} does not list {required}; the checkpoint is incomplete")
    for name, record in files.items():
        file = root / name
        if not file.is_file():
            raise CheckpointError(f"{root} lacks {name} (its manifest lists it): the checkpoint is incomplete")
        size = file.stat().st_size
        if size != record["bytes"] or file_sha256(file) != record["sha256"]:
            what = (f"{size} bytes where {MANIFEST_FILE} records {record['bytes']}" if size != record["bytes"]
                    else f"its sha256 differs from the one {MANIFEST_FILE} records")
            raise CheckpointError(
                f"{file} fails its integrity check ({what}): it "
                "changed after it was written (disk or copy corruption, or an edit). Use the other "
                "checkpoint of the run, or start the run over with --overwrite."
            )
    return manifest


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a checkpoint folder, verified against its manifest: ``(weights by prefix, state)``.

    Raises:
        CheckpointError: the folder is missing or incomplete, or a file is corrupt,
            truncated, altered, or holds Python objects.
    """
    found = find_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no checkpoint at {folder}")
    verify_checkpoint(found)
    weights = split_prefixes(read_weights(found / WEIGHTS_FILE))
    state = _read_state(found / STATE_FILE)
    return weights, state


def _read_state(file: Path) -> dict[str, Any]:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(
                f"{file} holds Python objects (code that unpickling would run), not only tensors and "
                "numbers; tasgen refuses to load it. It was not written by tasgen: use a checkpoint "
                "written by `tasgen train`."
            ) from None
        raise CheckpointError(f"{file} is corrupt ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{file} is corrupt or truncated ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is not a tasgen training state")
    return state


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    # torch's unpickling hints end in "weights_only=False", the one thing never to do here.
    return line if "weights_only" not in line else type(exc).__name__
