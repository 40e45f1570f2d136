"""torch.compile of the training step, as the spec's ``train.compile`` asks."""

from __future__ import annotations

from torch import nn


def compile_module(module: nn.Module, setting: bool | str, backend: str | None = None) -> nn.Module:
    """Compile ``module`` when ``setting`` is true or a mode name; return it unchanged otherwise.

    Args:
        module: the module to compile (the whole training step: system + objective).
        setting: ``train.compile``: False, True (default mode) or a torch.compile mode.
        backend: torch.compile backend; None is inductor. Tests use "aot_eager".

    Returns:
        The compiled module (it shares parameters with ``module``), or ``module``.
    """
    if setting is False:
        return module
    import torch

    mode = None if setting is True or setting == "default" else setting
    kwargs = {"backend": backend} if backend else {}
    return torch.compile(module, mode=mode, **kwargs)  # type: ignore[return-value]
