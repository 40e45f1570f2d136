"""Shapes and invariants of the block library."""

from __future__ import annotations

import pytest
import torch

from tasgen.blocks import (
    Attention,
    AttentionBlock,
    ConvBlock,
    PatchEmbed,
    TokenBlock2d,
    TokenMixingBlock,
    WindowAttentionBlock,
    covering_kernel,
    default_num_heads,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "stride", "size", "out_size"),
    [(8, 8, 1, 9, 9), (8, 16, 1, 9, 9), (8, 16, 2, 9, 5), (4, 8, 3, 10, 4), (4, 8, 4, 10, 3)],
)
def test_conv_block_shape(in_ch: int, out_ch: int, stride: int, size: int, out_size: int) -> None:
    block = ConvBlock(in_ch, out_ch, stride)
    assert block(torch.randn(2, in_ch, size, size)).shape == (2, out_ch, out_size, out_size)


def test_conv_block_identity_shortcut_only_when_shape_kept() -> None:
    assert isinstance(ConvBlock(8, 8).shortcut, torch.nn.Identity)
    assert not isinstance(ConvBlock(8, 8, 2).shortcut, torch.nn.Identity)
    assert not isinstance(ConvBlock(8, 16).shortcut, torch.nn.Identity)


def test_covering_kernel() -> None:
    assert [covering_kernel(s) for s in (1, 2, 3, 4, 5)] == [3, 3, 3, 5, 5]


@pytest.mark.parametrize(("dim", "heads"), [(16, 1), (32, 1), (64, 2), (96, 3), (80, 2), (200, 5)])
def test_default_num_heads(dim: int, heads: int) -> None:
    assert default_num_heads(dim) == heads
    assert dim % default_num_heads(dim) == 0


def test_attention_matches_reference() -> None:
    attn = Attention(16, 4)
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-1, -2) / 2.0).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected)


def test_attention_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Attention(10, 3)


def test_attention_block_and_mixer_shapes() -> None:
    x = torch.randn(2, 12, 16)
    assert AttentionBlock(16, 2, 2.0)(x).shape == x.shape
    mixer = TokenMixingBlock(16, 12, 2.0)
    assert mixer(x).shape == x.shape
    assert hasattr(mixer, "mlp_tokens")
    with pytest.raises(ValueError, match="12 tokens"):
        mixer(torch.randn(2, 9, 16))


def test_mixer_mixes_across_tokens() -> None:
    mixer = TokenMixingBlock(8, 6)
    x = torch.randn(1, 6, 8)
    y = x.clone()
    y[0, 0] += torch.randn(8)  # not a constant shift, which LayerNorm would remove
    # Changing one token changes the other tokens' outputs only through mlp_tokens.
    assert not torch.allclose(mixer(x)[0, 1:], mixer(y)[0, 1:])


@pytest.mark.parametrize(("size", "patch", "out"), [(8, 4, 2), (9, 4, 3), (7, 1, 7), (5, 2, 3)])
def test_patch_embed_shape(size: int, patch: int, out: int) -> None:
    assert PatchEmbed(3, 8, patch)(torch.randn(2, 3, size, size)).shape == (2, 8, out, out)


def test_token_block_2d_roundtrip() -> None:
    wrapped = TokenBlock2d(torch.nn.Identity())
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(wrapped(x), x)
    assert TokenBlock2d(AttentionBlock(4, 1))(x).shape == x.shape


@pytest.mark.parametrize(
    ("H", "W", "window"), [(5, 7, 4), (8, 8, 4), (3, 2, 7), (1, 9, 4), (6, 6, 1)]
)
@pytest.mark.parametrize("bias", [True, False])
def test_window_attention_shapes(H: int, W: int, window: int, bias: bool) -> None:
    block = WindowAttentionBlock(16, 2, window, 2.0, rel_pos_bias=bias)
    x = torch.randn(2, H, W, 16)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_window_attention_equals_attention_for_one_window() -> None:
    plain = AttentionBlock(16, 2, 2.0)
    windowed = WindowAttentionBlock(16, 2, window_size=8, mlp_ratio=2.0, rel_pos_bias=False)
    windowed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 7, 16)  # window 8 clamps to the 5x7 grid: one window, no padding
    expected = plain(x.flatten(1, 2)).view(2, 5, 7, 16)
    torch.testing.assert_close(windowed(x), expected)


def test_window_attention_ignores_padding() -> None:
    # On a 5x4 grid with window 4 the last window row holds grid row 4 plus padding;
    # with padded keys masked it must equal the block run on row 4 alone.
    block = WindowAttentionBlock(16, 2, window_size=4, mlp_ratio=2.0)
    x = torch.randn(2, 5, 4, 16)
    torch.testing.assert_close(block(x)[:, 4:], block(x[:, 4:]))


def test_window_attention_is_local() -> None:
    block = WindowAttentionBlock(8, 1, window_size=2, mlp_ratio=1.0)
    x = torch.randn(1, 4, 4, 8)
    y = x.clone()
    y[0, 0, 0] += torch.randn(8)  # inside the top-left window only
    diff = (block(x) - block(y)).abs().sum(-1)[0]
    assert diff[:2, :2].gt(0).all()
    assert diff[2:].eq(0).all() and diff[:, 2:].eq(0).all()


def test_window_attention_compiles_fullgraph() -> None:
    block = WindowAttentionBlock(16, 2, window_size=4, mlp_ratio=2.0).eval()
    x = torch.randn(2, 5, 7, 16)  # padded windows and the bias: both mask paths
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x))


def test_planning_with_cached_tables_imports_no_torch(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tasgen import planner\n"
        "heavy = sorted(m for m in ('torch', 'timm') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
