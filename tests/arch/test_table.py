"""The layout rules of stage tables (torch-free)."""

from __future__ import annotations

from tasgen.arch.table import sample_shape, token_grid


def test_the_grid_is_rounded_up_as_strided_convolutions_do() -> None:
    assert token_grid(224, 16) == (14, 14)
    assert token_grid(64, 3) == (22, 22)
    assert token_grid((64, 48), 32) == (2, 2)
    assert token_grid((65, 48), 16) == (5, 3)


def test_each_layout_places_channels_and_prefix_tokens() -> None:
    assert sample_shape("NCHW", 96, (7, 5)) == (96, 7, 5)
    assert sample_shape("NHWC", 96, (7, 5)) == (7, 5, 96)
    assert sample_shape("NLC", 192, (14, 14), prefix_tokens=5) == (5 + 196, 192)  # class + 4 register tokens
    assert sample_shape("NLC", 192, (14, 14)) == (196, 192)
