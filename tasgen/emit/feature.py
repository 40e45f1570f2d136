"""The knowledge f of a model: its final feature map, average pooled, or its classifier's input."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from tasgen.arch.table import Head, Layout


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


def head_pass(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, pre-logits feature)`` from one pass through the model's head.

    timm's ``forward_head(x, pre_logits=True)`` returns exactly what its classifier
    receives (pooling, norm and head dropout applied), so the classifier turns it into
    the logits and both see the same dropout mask.

    Args:
        model: A timm model or a tasgen Backbone.
        x: Its ``forward_features`` output.
    """
    classifier = classifier_of(model)
    feature = model.forward_head(x, pre_logits=True)
    if classifier is not None:
        return classifier(feature), feature
    # Distilled ViTs average two classifiers over two tokens, EfficientViM weighs one per
    # stage: no single classifier input exists, so the head runs for the logits too.
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


def knowledge(model: nn.Module, head: Head, x: torch.Tensor, pool: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, feature f)`` of a model from its final feature map ``x`` (its forward_features output).

    Args:
        model: A timm model or a tasgen Backbone.
        head: Its stage table's head record (the final map's layout and prefix tokens).
        x: The final feature map (forward_features' whole list where the head fuses several).
        pool: ``avg`` (the map, average pooled) or ``head`` (the classifier's input).
    """
    if pool == "avg":
        final = x if head.feature_item is None else x[head.feature_item]
        return model.forward_head(x), average_pool(final, head.feature_layout, head.feature_prefix_tokens)
    return head_pass(model, x)
