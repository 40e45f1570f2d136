"""The knowledge f of a model: its final feature map, average pooled, or its classifier's input."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from tasgen.arch.table import Head, Layout, StageTable, sample_shape, token_grid


def average_pool(x: torch.Tensor, layout: Layout, prefix_tokens: int = 0) -> torch.Tensor:
    """Global average pooling of a feature map over its spatial positions.

    Args:
        x: The map: (B, C, H, W), (B, H, W, C), (B, prefix + grid tokens, C) or (B, C, tokens).
        layout: Its layout.
        prefix_tokens: Class/register tokens in front of the grid tokens (left out).

    Returns:
        (B, C).
    """
    if layout == "NCHW":
        return x.mean((2, 3))
    if layout == "NHWC":
        return x.mean((1, 2))
    if layout == "NCL":
        return x.mean(2)
    return x[:, prefix_tokens:].mean(1)


def head_pass(model: nn.Module, x: torch.Tensor, classifier: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, pre-logits feature)``, from one pass through the model's head where it has one.

    timm's ``forward_head(x, pre_logits=True)`` returns what its classifier receives
    (pooling, norm and head dropout applied), so the classifier turns it into the
    logits and both see the same dropout mask.

    Args:
        model: A timm model or a tasgen Backbone.
        x: Its ``forward_features`` output.
        classifier: ``one_pass_classifier(model, ...)``: the classifier that makes the
            logits from the pre-logits feature, or None where no single one does
            (distilled ViTs, EfficientViM, VOLO's auxiliary head): the head then runs
            a second time for the logits.
    """
    feature = model.forward_head(x, pre_logits=True)
    if classifier is not None:
        return classifier(feature), feature
    return model.forward_head(x), feature


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The module that turns ``forward_head(x, pre_logits=True)`` into the logits, or None.

    timm's ``get_classifier()`` is that module for most models; some return their
    whole head (pooling and norm included, as SAM's ``NormMlpClassifierHead``), whose
    last layer is ``fc``; distilled ViTs and EfficientViM have several classifiers.
    """
    classifier = model.get_classifier()
    if isinstance(classifier, nn.Module) and "pre_logits" in inspect.signature(classifier.forward).parameters:
        classifier = getattr(classifier, "fc", None)
    if not isinstance(classifier, nn.Module) or isinstance(classifier, (nn.ModuleList, nn.ModuleDict)):
        return None
    return classifier


def one_pass_classifier(model: nn.Module, final_map: torch.Tensor | None) -> nn.Module | None:
    """``classifier_of(model)`` where the logits are that classifier applied to the pre-logits feature, else None.

    Checked once on a sample final map, by structure rather than by value (weights
    may be loaded later, or start at zero): ``forward_head`` must return the
    classifier's own output, and the classifier must receive what ``forward_head(x,
    pre_logits=True)`` returns. VOLO adds its auxiliary head's score to the
    classifier's output, so it fails the check.
    """
    classifier = classifier_of(model)
    if classifier is None or final_map is None:
        return None
    seen: dict[str, torch.Tensor] = {}

    def record(_module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen["input"], seen["output"] = args[0], out

    handle = classifier.register_forward_hook(record)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model.forward_head(final_map)
            pre_logits = model.forward_head(final_map, pre_logits=True)
    except Exception:  # noqa: BLE001 - a head that does not take the sample: run it twice
        return None
    finally:
        handle.remove()
        model.train(training)
    if "output" not in seen or logits is not seen["output"] or seen["input"].shape != pre_logits.shape:
        return None
    return classifier if pre_logits.is_meta or torch.equal(seen["input"], pre_logits) else None


def final_map_shape(table: StageTable) -> tuple[int, ...] | None:
    """One sample's final feature map shape, as the table records it; None where forward_features returns a list."""
    head = table.head
    if head.feature_item is not None:
        return None
    grid = token_grid(tuple(table.input_size[1:]), table.stages[-1].reduction if table.stages else 1)
    return sample_shape(head.feature_layout, head.feature_channels, grid, head.feature_prefix_tokens)


def sample_final_map(model: nn.Module, table: StageTable) -> torch.Tensor | None:
    """Two final feature maps of the shape the table records (zeros), on the model's device; None for a list."""
    shape = final_map_shape(table)
    if shape is None:
        return None
    weight = next(iter(model.parameters()), None)
    device, dtype = (weight.device, weight.dtype) if weight is not None else ("cpu", torch.float32)
    return torch.zeros(2, *shape, device=device, dtype=dtype)


def knowledge(
    model: nn.Module, head: Head, x: torch.Tensor, pool: str, classifier: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, feature f)`` of a model from its final feature map ``x`` (its forward_features output).

    Args:
        model: A timm model or a tasgen Backbone.
        head: Its stage table's head record (the final map's layout and prefix tokens).
        x: The final feature map (forward_features' whole list where the head fuses several).
        pool: ``avg`` (the map, average pooled) or ``head`` (the classifier's input).
        classifier: for ``head``, ``one_pass_classifier``'s answer (see ``head_pass``).
    """
    if pool == "avg":
        final = x if head.feature_item is None else x[head.feature_item]
        return model.forward_head(x), average_pool(final, head.feature_layout, head.feature_prefix_tokens)
    return head_pass(model, x, classifier)
