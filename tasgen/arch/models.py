"""Build the models a spec names, and read their stage tables (cached)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasgen.arch import cache
from tasgen.arch.table import StageTable
from tasgen.spec.schema import BackboneSpec, TimmModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

ModelSpec = TimmModelSpec | BackboneSpec


def model_label(model: ModelSpec, role: str) -> str:
    """A short name: the timm name, or ``spec:<role>`` for a stage-described backbone."""
    return model.timm if isinstance(model, TimmModelSpec) else f"spec:{role}"


def create_model(
    model: ModelSpec, *, num_classes: int, image_size: int, device: torch.device | str | None = None
) -> nn.Module:
    """Instantiate a model of the spec (random weights; checkpoints load elsewhere).

    Args:
        model: a timm model spec or a stage-described backbone.
        num_classes: classifier width.
        image_size: input side; passed to timm models that take ``img_size``.
        device: where parameters are allocated ("meta" allocates nothing).

    Returns:
        The model, in train mode.
    """
    import torch

    with torch.device(device or "cpu"):
        if isinstance(model, BackboneSpec):
            from tasgen.backbone import Backbone

            return Backbone.from_spec(model, num_classes=num_classes, img_size=image_size)
        kwargs = dict(model.kwargs)
        kwargs.setdefault("num_classes", num_classes)
        net = create_timm_model(model.timm, image_size=image_size, **kwargs)
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, dict):
        classes = int(getattr(net, "num_classes", num_classes))
        # The cfg must describe this model: its input size and classes; built from scratch,
        # nothing of timm's default weights (a pretrained start keeps their origin and licence).
        net.pretrained_cfg = net.default_cfg = (
            {**cfg, "input_size": (int(cfg.get("input_size", (3,))[0]), image_size, image_size), "num_classes": classes}
            if model.pretrained else trained_cfg(cfg, image_size=image_size, num_classes=classes))
    return net


# What in a timm pretrained_cfg describes the architecture; the rest says where timm's
# default weights came from (hub id, url, tag, licence, their eval crop).
_ARCHITECTURE_KEYS = ("architecture", "first_conv", "classifier", "fixed_input_size", "interpolation", "mean", "std")


def trained_cfg(cfg: dict, *, image_size: int, num_classes: int, mean: tuple[float, ...] | None = None,
                std: tuple[float, ...] | None = None) -> dict:
    """A timm ``pretrained_cfg`` true of a model tasgen builds and trains from scratch.

    Keeps what describes the architecture (name, first conv, classifier,
    interpolation, the normalisation tasgen feeds it), sets the input size and class
    count it is trained at, and drops the origin of timm's default weights (hub id,
    url, tag, licence, crop), which weights trained by tasgen do not have.

    Args:
        cfg: the model's current ``pretrained_cfg``.
        image_size: the square side it is trained at.
        num_classes: its classifier's width.
        mean: the normalisation mean, when it is not the cfg's.
        std: the normalisation std, when it is not the cfg's.
    """
    out = {k: cfg[k] for k in _ARCHITECTURE_KEYS if k in cfg}
    in_chans = int(cfg.get("input_size", (3,))[0])
    out.update(input_size=(in_chans, image_size, image_size), num_classes=num_classes)
    if mean is not None:
        out["mean"] = tuple(mean)
    if std is not None:
        out["std"] = tuple(std)
    return out


def create_timm_model(name: str, *, image_size: int, pretrained: bool = False, **kwargs: object) -> nn.Module:
    """``timm.create_model`` built for ``image_size`` where the model takes ``img_size``.

    ViT-like models size their position embeddings from ``img_size``; CNNs take no
    such argument and are built without it. An ``img_size`` in ``kwargs`` wins.
    """
    import timm

    if name.startswith(("hf-hub:", "hf_hub:")):
        _check_hub_reachable(name.split(":", 1)[1].split("@", 1)[0])
    if "img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=image_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(name, pretrained=pretrained, **kwargs)


HUB_PROBE_TIMEOUT_S = 3.0
"""How long a Hub model's first fetch waits to reach the Hub before saying it is offline."""


def _check_hub_reachable(repo_id: str) -> None:
    """Fail in seconds, not after the Hub client's retries (~30 s), when an uncached Hub model cannot be fetched.

    Raises:
        OSError: the model's config is not in the Hugging Face cache and the Hub's
            host does not answer within `HUB_PROBE_TIMEOUT_S`.
    """
    import contextlib
    import socket
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # offline mode fails fast by itself; a cached model needs no network
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    answered: list[bool] = []

    def connect() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            answered.append(True)

    # A daemon thread, because the name lookup before the connection ignores the socket's timeout.
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(HUB_PROBE_TIMEOUT_S)
    if not answered:
        raise OSError(f"{host}:{port} does not answer within {HUB_PROBE_TIMEOUT_S:g} s "
                      f"and {repo_id} is not in the Hugging Face cache")


def stage_table(
    model: ModelSpec, *, role: str, num_classes: int, image_size: int, use_cache: bool = True
) -> StageTable:
    """The stage table of a spec's model, from the cache when it is there.

    A cache hit imports neither torch nor timm. Raises
    tasgen.arch.introspect.ModelReadError (or the model constructor's error) when
    the model cannot be built or read, and tasgen.arch.size.ModelTooLargeError
    when it has more modules than tasgen reads (see `tasgen.arch.size`).
    """
    key = cache.table_key(model.model_dump(mode="json", exclude={"checkpoint", "pretrained"}), num_classes, image_size)
    if use_cache and (hit := cache.load_table(key)) is not None:
        return hit.model_copy(update={"model": model_label(model, role)})
    from tasgen.arch.introspect import read_stage_table
    from tasgen.arch.size import bounded_build

    with bounded_build(model_label(model, role)):  # a model too large to read stops while it is built
        net = create_model(model, num_classes=num_classes, image_size=image_size, device="meta")
    source = "timm" if isinstance(model, TimmModelSpec) else "spec"
    table = read_stage_table(net, name=model_label(model, role), source=source, image_size=image_size)
    if use_cache:
        cache.store_table(key, table)
    return table


# What the stage reader asks of a model: timm's model interface.
MODEL_INTERFACE = ("feature_info", "forward_features", "forward_head", "forward_intermediates")


def module_stage_table(model: nn.Module, *, role: str, num_classes: int, image_size: int) -> StageTable:
    """The stage table of a model object (a fine-tuned timm model, or one's own module).

    The table is read from the object itself, as it is built (widths, depths, image
    size), never by re-creating a model from its name. The model runs one image on its
    own device, under ``no_grad``, and keeps its train/eval mode.

    Args:
        model: answers timm's model interface (`MODEL_INTERFACE`): ``feature_info``
            naming each stage's last module, ``forward_features``, ``forward_head``,
            ``forward_intermediates`` (the stage outputs the reading is checked against).
        role: "teacher" or "student", for messages.
        num_classes: the classes its logits must have.
        image_size: side of the square input the run uses.

    Raises:
        ModelReadError: the model cannot be read as stem + stages + head, or its
            classifier has another number of classes; the message says which model,
            what is missing and what to do.
    """
    import torch

    from tasgen.arch.introspect import ModelReadError, read_stage_table

    cfg = getattr(model, "pretrained_cfg", None) or {}
    kind = type(model).__name__
    name = f"{cfg['architecture']} ({kind} object)" if cfg.get("architecture") else f"{kind} object"
    missing = [attr for attr in MODEL_INTERFACE if not hasattr(model, attr)]
    if missing:
        raise ModelReadError(
            f"the {role} you passed ({name}) has no {', '.join(missing)}: tasgen reads a model's stages through "
            "timm's model interface (feature_info naming the module that ends each stage, forward_features, "
            "forward_head, forward_intermediates giving the stage outputs). Build it with timm.create_model "
            "(then load your weights), give it that interface, or name it in the spec "
            f"({role}: timm name or stages, with checkpoint: your weights)."
        )
    training = model.training
    try:
        with torch.no_grad():
            source = "timm" if type(model).__module__.startswith("timm.") else "module"
            table = read_stage_table(model, name=name, source=source, image_size=image_size)
    except ModelReadError as exc:
        raise ModelReadError(f"the {role} you passed ({name}) cannot be read as stem + stages + head: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a model the reader does not foresee: say which, not its traceback
        raise ModelReadError(
            f"the {role} you passed ({name}) cannot be read as stem + stages + head: running it on a "
            f"{image_size} px image fails ({type(exc).__name__}: {exc}). Check that it takes "
            f"(B, 3, {image_size}, {image_size}) images, or name it in the spec instead."
        ) from None
    finally:
        model.train(training)
    if table.head.num_classes != num_classes:
        raise ModelReadError(
            f"the {role} you passed ({name}) outputs {table.head.num_classes} classes, the run has {num_classes}: "
            f"give it a head of {num_classes} (timm: model.reset_classifier({num_classes})), or set num_classes "
            "in the spec."
        )
    return table
