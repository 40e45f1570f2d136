"""Read any model as a stage table, on the meta device (no weights, no compute).

The reading is generic, not a hand-written table per architecture:

1. timm's ``feature_info`` names the module that ends each stage. Leading
   entries at reduction <= 2 of a model with more than 4 belong to the stem; isotropic models (ViT, Mixer, ResMLP: every
   entry at the same reduction) are grouped into 4 equal-depth stages.
2. The model's submodules are expanded down to those stage ends ("atoms"), and a
   trace of ``forward_features`` on meta tensors records which atoms it calls, in
   which order. Atoms before the first stage form the stem, atoms after the last
   form the final part (norms, 1x1 head convs).
3. The parts are run one after another on meta tensors and checked against
   ``forward_features`` and ``forward_intermediates``. A model whose forward does
   work between its modules that tasgen does not know stays plannable (its table
   comes from ``forward_intermediates``) but is marked ``staged=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from tasgen.arch import graph
from tasgen.arch.errors import ImageSizeError, ModelReadError, NoClassifierError, NotAChainError
from tasgen.arch.graph import GraphReadError
from tasgen.arch.table import (
    POS_EMBED_METHOD,
    Head,
    Layout,
    Mixer,
    Part,
    Stage,
    StageTable,
    is_method,
    resolve,
    token_grid,
)

ISOTROPIC_GROUPS = 4


def _head_outputs(model: nn.Module, features: object, *, name: str, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward_head``'s pooled feature and logits.

    Raises:
        NoClassifierError: a feature encoder (timm's ``*_enc`` models, the vision
            towers of multimodal models) whose ``forward_head`` takes no ``pre_logits``
            or raises NotImplementedError: both readers would fail alike, so say why.
    """
    try:
        return model.forward_head(features, pre_logits=True), model.forward_head(features)
    except (TypeError, NotImplementedError) as exc:
        if isinstance(exc, TypeError) and "pre_logits" not in str(exc):
            raise
        why = "takes no pre_logits" if isinstance(exc, TypeError) else "raises NotImplementedError"
        raise NoClassifierError(
            f"{name} is a feature encoder without a classifier ({type(model).__name__}.forward_head {why}); "
            f"tasgen distils through logits, so pick a model with a head{_with_head_hint(name, source)}"
        ) from exc


def _with_head_hint(name: str, source: str) -> str:
    """A few timm models of the same family that have a head, as ``, such as a or b``."""
    if source != "timm":
        return ""
    import timm

    family = name.split("_")[0]
    siblings = [n for n in timm.list_models(f"{family}*") if n != name and not n.endswith("_enc")][:3]
    return f", such as {' or '.join(siblings)}" if siblings else ""


# ----------------------------------------------------------------- utilities
def submodule(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def count_params(modules: Iterable[nn.Module]) -> int:
    seen: set[int] = set()
    total = 0
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def _is_ancestor(parent: str, child: str) -> bool:
    return child.startswith(parent + ".")


def _info_entries(model: nn.Module) -> list[dict]:
    """feature_info's entries, each ``module`` resolved to a module path of the model."""
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ModelReadError(f"{type(model).__name__} has no feature_info")
    entries = [dict(e) for e in (info.info if hasattr(info, "info") else info)]
    if not entries:
        raise ModelReadError(f"{type(model).__name__} has an empty feature_info")
    names = [e["module"] for e in entries]
    if len(set(names)) != len(names):
        raise NotAChainError(
            f"{type(model).__name__} runs several branches side by side (its feature_info names "
            f"'{next(n for n in names if names.count(n) > 1)}' for more than one stage); tasgen needs one chain of stages"
        )
    # One walk of the module tree for all entries: a walk per entry is quadratic in depth.
    paths = dict(model.named_modules())
    resolve_name = _NameResolver(paths, len(entries))
    for e in entries:
        e["module"] = resolve_name(e["module"])
    for e in entries:
        if e["module"] not in paths and e.get("reduction", 1) > 2:
            raise NotAChainError(
                f"{type(model).__name__}'s feature_info names '{e['module']}', which is not one of its modules "
                "(its features come from parallel branches, not from stages run one after another); "
                "tasgen needs one chain of stages"
            )
    return entries


class _NameResolver:
    """Resolves feature_info names to module paths.

    Some models name a stage ``block.2`` or ``blocks.2`` where the module is
    ``stages.2`` or ``encoder.blocks.2``: such a name resolves to the one module
    path ending in it, else to index N of the one container of ``count`` children
    (preferring containers named like the prefix). The indexes behind both rules
    are built once, on the first name that needs them, so resolving every entry
    of a deep model stays linear in its modules.
    """

    def __init__(self, paths: dict[str, nn.Module], count: int) -> None:
        self.paths = paths
        self.count = count
        self._endings: dict[str, list[str]] | None = None
        self._lists: list[str] | None = None

    def __call__(self, name: str) -> str:
        if name in self.paths:
            return name
        ending = self._ending(name)
        if len(ending) == 1:
            return ending[0]
        prefix, _, index = name.rpartition(".")
        if index.isdigit():
            lists = self._containers()
            named = [p for p in lists if p.rpartition(".")[2].startswith(prefix.rpartition(".")[2])]
            for group in (named, lists):
                if len(group) == 1:
                    return f"{group[0]}.{index}"
        return name

    def _ending(self, name: str) -> list[str]:
        if self._endings is None:
            # Every proper dotted suffix of every path: "a.b.c" is found by "b.c" and "c".
            self._endings = {}
            for path in self.paths:
                parts = path.split(".")
                for i in range(1, len(parts)):
                    self._endings.setdefault(".".join(parts[i:]), []).append(path)
        return self._endings.get(name, [])

    def _containers(self) -> list[str]:
        if self._lists is None:
            self._lists = [p for p, m in self.paths.items()
                           if p and isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) == self.count]
        return self._lists


def _stage_ends(model: nn.Module) -> list[str]:
    entries = _info_entries(model)
    # timm lists the stem's output first when it has 5 entries (ResNet's act1,
    # RegNet's stem): a stem, not a stage. A 4-stage model keeps all its entries.
    while len(entries) > ISOTROPIC_GROUPS and entries[0]["reduction"] <= 2:
        entries.pop(0)
    reductions = {e["reduction"] for e in entries}
    if len(reductions) == 1 and len(entries) > ISOTROPIC_GROUPS:
        n = len(entries)
        ends = [round((g + 1) * n / ISOTROPIC_GROUPS) - 1 for g in range(ISOTROPIC_GROUPS)]
        entries = [entries[i] for i in ends]
    return [e["module"] for e in entries]


def _atoms(model: nn.Module, ends: Sequence[str]) -> list[str]:
    """Submodule paths, expanded just deep enough that every stage end is one."""

    def expand(module: nn.Module, prefix: str) -> list[str]:
        out = []
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if any(_is_ancestor(path, end) for end in ends):
                out.extend(expand(child, path + "."))
            else:
                out.append(path)
        return out

    return expand(model, "")


def _trace_calls(model: nn.Module, atoms: Sequence[str], x: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    called: list[str] = []
    seen: set[str] = set()  # a set: `path not in called` would be quadratic in depth
    handles = []
    for path in atoms:
        def hook(_module, _args, path=path):
            if path not in seen:
                seen.add(path)
                called.append(path)
        handles.append(submodule(model, path).register_forward_pre_hook(hook))
    try:
        out = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return called, out


def _segment(model: nn.Module, called: list[str], ends: Sequence[str]) -> tuple[list[str], list[list[str]], list[str]]:
    positions = []
    for end in ends:
        hits = [i for i, a in enumerate(called) if a == end or _is_ancestor(a, end)]
        if not hits:
            raise ModelReadError(f"forward_features never calls stage module '{end}'")
        positions.append(hits[-1])
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ModelReadError("stage modules are not called in order")
    # The first stage also takes the blocks in its end module's container that run
    # before it (ViT's blocks.0-2 for an end at blocks.2; MobileNet's blocks.0).
    first = positions[0]
    parent = called[first].rpartition(".")[0]
    while parent and first > 0 and called[first - 1].rpartition(".")[0] == parent:
        first -= 1
    stem = called[:first]
    stages, start = [], first
    for pos in positions:
        stages.append(called[start : pos + 1])
        start = pos + 1
    final = called[start:]
    if hasattr(model, POS_EMBED_METHOD) and "pos_drop" in stem:
        stem = [POS_EMBED_METHOD if a == "pos_drop" else a for a in stem]
    return stem, stages, final


def run_modules(model: nn.Module, modules: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    for path in modules:
        x = resolve(model, path)(x)
    return x


def _layout(
    shape: Sequence[int],
    channels: int | None,
    reduction: int | None,
    size: tuple[int, int],
    grown: Sequence[int] | None = None,
) -> tuple[Layout, int, int, int]:
    """Return (layout, channels, reduction, prefix_tokens) of an output shape.

    Args:
        shape: the output's shape (batch first).
        channels: the width timm's feature_info gives, when known.
        reduction: the reduction feature_info gives; token outputs need it to tell
            grid tokens from prefix tokens.
        size: the input's (height, width).
        grown: the same output's shape for a larger input, when the readers had to
            ask (`_ambiguous`): the axes that grow with the input are the grid.
    """
    h = size[0]
    if len(shape) == 4:
        _, a, b, c = shape
        told = _grid_axes_layout(shape, grown)
        if told == "NCHW":
            layout, ch, gh = "NCHW", a, b
        elif told == "NHWC":
            layout, ch, gh = "NHWC", c, a
        elif channels is not None and c == channels and a != channels:
            layout, ch, gh = "NHWC", c, a
        elif channels is not None and a == channels:
            layout, ch, gh = "NCHW", a, b
        elif b == c and a != b:  # square grid in the last two axes
            layout, ch, gh = "NCHW", a, b
        else:
            layout, ch, gh = "NHWC", c, a
        return layout, ch, max(1, round(h / gh)), 0
    if len(shape) == 3:
        _, n, ch = shape
        if reduction is None:
            raise ModelReadError(f"cannot tell the token grid of an output of shape {tuple(shape)}")
        rows, cols = token_grid(size, reduction)
        grid = rows * cols
        if grid > n:
            raise ModelReadError(f"{n} tokens cannot hold a {grid}-token grid at reduction {reduction}")
        return "NLC", ch, reduction, n - grid
    raise ModelReadError(f"unexpected output rank {len(shape)} (shape {tuple(shape)})")


def _ambiguous(shape: Sequence[int], channels: int | None) -> bool:
    """Whether a 4-d shape alone cannot tell NCHW from NHWC.

    A width equal to the grid's side (32 channels on a 32x32 map), or a grid that is
    not square, leaves shape equality guessing; the readers then run the model at a
    second size (`_layout`'s ``grown``).
    """
    if len(shape) != 4:
        return False
    _, a, b, c = shape
    if channels is not None:
        return a == c == channels
    return not ((b == c and a != b) or (a == b and c != a))


def _grid_axes_layout(shape: Sequence[int], grown: Sequence[int] | None) -> Layout | None:
    """NCHW or NHWC from the axes that change with the input size; None when they do not tell."""
    if grown is None or len(grown) != 4 or len(shape) != 4:
        return None
    moved = tuple(i for i in (1, 2, 3) if shape[i] != grown[i])
    return {(2, 3): "NCHW", (1, 2): "NHWC"}.get(moved)


def _nchw(shape: Sequence[int], layout: Layout, grid: tuple[int, int]) -> tuple[int, ...]:
    """The NCHW shape of an output, as forward_intermediates reports it."""
    if layout == "NCHW":
        return tuple(shape)
    if layout == "NHWC":
        b, h, w, c = shape
        return (b, c, h, w)
    b, n, c = shape
    return (b, c, *grid)


# --------------------------------------------------------------- mixer kinds
_ATTENTION_ATTRS = (("qkv",), ("q", "kv"), ("q", "k", "v"), ("qk", "v"), ("to_qkv",), ("q_proj", "k_proj", "v_proj"),
                    ("query", "key", "value"))
_TOKEN_MLP_ATTRS = ("mlp_tokens", "linear_tokens", "token_mixing")


def detect_mixer(modules: Iterable[nn.Module]) -> Mixer:
    """The token mixer of a stage, read from the module types inside it.

    Attention: a module holding query/key/value projections, or torch's
    MultiheadAttention. Token MLP: a module with a token-mixing MLP (Mixer,
    ResMLP) or a spatial gating unit (gMLP). Anything else mixes locally (conv).
    Channel-attention modules (squeeze-excite and friends) have no q/k/v and stay conv.
    """
    found: set[str] = set()
    for root in modules:
        for m in root.modules():
            if isinstance(m, nn.MultiheadAttention) or any(
                all(isinstance(getattr(m, a, None), nn.Module) for a in attrs) for attrs in _ATTENTION_ATTRS
            ):
                found.add("attention")
            elif any(isinstance(getattr(m, a, None), nn.Module) for a in _TOKEN_MLP_ATTRS) or (
                "SpatialGating" in type(m).__name__
            ):
                found.add("mlp")
    if "attention" in found:
        return "attention"
    if "mlp" in found:
        return "mlp"
    return "conv"


_NOT_BLOCKS = ("downsample", "embed", "merging", "stem")


def _blocks(container: nn.Module) -> int:
    # Resampling layers at a stage's start are not blocks.
    return sum(not any(w in type(m).__name__.lower() for w in _NOT_BLOCKS) for m in container)


def _depth(model: nn.Module, atoms: Sequence[str]) -> int:
    """Blocks in a stage (a reading for people; nothing depends on it)."""
    depth = 0
    for path in atoms:
        m = submodule(model, path)
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) > 0:
            depth += _blocks(m)
        elif isinstance(getattr(m, "blocks", None), (nn.Sequential, nn.ModuleList)):
            depth += _blocks(m.blocks)
        else:
            depth += 1
    return max(depth, 1)


# ------------------------------------------------------------------- reading
def read_stage_table(model: nn.Module, *, name: str, source: str, image_size: int) -> StageTable:
    """Read a model (ideally built on the meta device) as a stage table.

    The model is first read as a chain of modules (each part its modules called in
    turn). Where that does not reproduce ``forward_features`` (its forward does
    work between modules, or a stage ends inside a residual block), it is read as
    a graph (``tasgen.arch.graph``): the traced ``forward_features`` cut after
    each stage end.

    Args:
        model: a timm model or a tasgen Backbone.
        name: the name recorded in the table.
        source: "timm" or "spec".
        image_size: side of the square input the table is computed for.

    Returns:
        The stage table. Raises ModelReadError when the model has no stage
        structure tasgen can find.
    """
    chain: StageTable | None = None
    try:
        chain = _read_chain(model, name=name, source=source, image_size=image_size)
        if chain.staged and graph.same_ops(model, _stage_ends(model), _chain_modules(chain)):
            return chain
    except (NotAChainError, NoClassifierError):
        raise
    except ModelReadError:
        pass
    except Exception:  # noqa: BLE001 - the graph reader below says what is wrong
        pass
    try:
        return _read_graph(model, name=name, source=source, image_size=image_size)
    except NoClassifierError:
        raise
    except GraphReadError as exc:
        reason = f"cannot run {name} stage by stage: {exc}"
    except Exception as exc:  # noqa: BLE001 - a model the reader does not foresee; say so, not its traceback
        reason = f"cannot run {name} stage by stage: reading its traced forward_features fails ({type(exc).__name__})"
    patch = _stem_reduction(model)
    if image_size % patch:
        # A patch embedding that does not tile the image drops its edge, so no value has the
        # grid the stages' feature_info promises: the size, not the model, is what to change.
        raise ImageSizeError(
            f"{name} cuts images into {patch}x{patch} patches and {image_size} px is not a multiple of {patch}",
            multiple=patch)
    if chain is not None:  # plannable, but no assistant can be emitted from it
        return chain.model_copy(update={"staged": False, "staged_error": reason})
    raise ModelReadError(reason)


def _stem_reduction(model: nn.Module) -> int:
    """The smallest reduction feature_info reports: a ViT's patch size, a CNN's first stage."""
    try:
        return max(1, min(int(e["reduction"]) for e in _info_entries(model)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return 1


def _chain_modules(table: StageTable) -> list[str]:
    return [*table.stem.modules, *(m for s in table.stages for m in s.modules), *table.head.final_modules]


def _sample(model: nn.Module, image_size: int) -> tuple[torch.Tensor, dict]:
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("meta")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = int(cfg.get("input_size", (3,))[0])
    return torch.empty(1, in_chans, image_size, image_size, device=device), cfg


def _read_chain(model: nn.Module, *, name: str, source: str, image_size: int) -> StageTable:
    """Read a model as a chain of its modules (see the module docstring)."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("meta")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = int(cfg.get("input_size", (3,))[0])
    size = (image_size, image_size)
    x = torch.empty(1, in_chans, *size, device=device)
    model.eval()
    ends = _stage_ends(model)
    atoms = _atoms(model, ends)
    with torch.no_grad():
        called, features = _trace_calls(model, atoms, x)
        _check_features(model, features)
        stem_m, stage_m, final_m = _segment(model, called, ends)
        reference = _reference_shapes(model, x, ends, size)
        staged_error = None
        try:
            parts, final_out = _run_parts(model, x, stem_m, stage_m, final_m)
            if tuple(final_out.shape) != tuple(features.shape):
                raise ModelReadError(
                    f"running the parts in turn gives {tuple(final_out.shape)}, forward_features {tuple(features.shape)}"
                )
        except Exception as exc:  # noqa: BLE001
            staged_error = f"cannot run {name} stage by stage: {exc}"
            parts = None
        pooled, logits = _head_outputs(model, features, name=name, source=source)

    infos = _feature_info(model, ends, "num_chs")
    reductions = _feature_info(model, ends, "reduction")
    stages: list[Stage] = []
    if parts is not None:
        stem_shape, stage_shapes = parts
        grown = _GrownShapes(lambda x2: _run_parts(model, x2, stem_m, stage_m, final_m)[0], x)
        # A token stem (ViT, Mixer) emits the grid its first stage keeps.
        layout, ch, red, prefix = _layout(stem_shape, None, reductions[0], size,
                                          grown.stem() if _ambiguous(stem_shape, None) else None)
        stem = Part(modules=stem_m, channels=ch, reduction=red, layout=layout, prefix_tokens=prefix,
                    params=count_params(_mods(model, stem_m)))
        for i, (shape, mods, ref) in enumerate(zip(stage_shapes, stage_m, reference, strict=True)):
            layout, ch, red, prefix = _layout(shape, infos[i], reductions[i], size,
                                              grown.stage(i) if _ambiguous(shape, infos[i]) else None)
            if _nchw(shape, layout, token_grid(size, red))[1:] != ref[1:]:
                staged_error = (f"cannot run {name} stage by stage: stage {i + 1} gives {tuple(shape)} "
                                f"({layout}), forward_intermediates {ref}")
            stages.append(_stage(model, i, mods, ch, red, layout, prefix))
    else:
        first = reference[0]
        stem = Part(modules=stem_m, channels=int(first[1]), reduction=max(1, round(size[0] / first[2])),
                    layout="NCHW", params=count_params(_mods(model, stem_m)))
        for i, (mods, ref) in enumerate(zip(stage_m, reference, strict=True)):
            _, ch, gh, _ = ref
            stages.append(_stage(model, i, mods, ch, max(1, round(size[0] / gh)), "NCHW", 0))

    f_layout, f_channels, _, f_prefix = _layout(
        tuple(features.shape), getattr(model, "num_features", None), reductions[-1], size
    )
    head_params = count_params(model.modules()) - count_params(_mods(model, [*stem_m, *[m for s in stage_m for m in s]]))
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return StageTable(
        model=name,
        source=source,
        family=type(model).__name__,
        input_size=(in_chans, *size),
        mean=mean,
        std=std,
        stem=stem,
        stages=stages,
        head=Head(final_modules=final_m, feature_channels=f_channels, feature_layout=f_layout,
                  feature_prefix_tokens=f_prefix, num_features=int(pooled.shape[-1]), num_classes=int(logits.shape[-1]),
                  params=head_params),
        params=count_params([model]),
        staged=staged_error is None,
        staged_error=staged_error,
    )


def _mods(model: nn.Module, paths: Iterable[str]) -> list[nn.Module]:
    return [submodule(model, p) for p in paths if not is_method(p)]


def _stage(model: nn.Module, i: int, mods: list[str], ch: int, red: int, layout: Layout, prefix: int) -> Stage:
    modules = _mods(model, mods)
    return Stage(index=i + 1, modules=mods, channels=ch, reduction=red, layout=layout, prefix_tokens=prefix,
                 params=count_params(modules), mixer=detect_mixer(modules), depth=_depth(model, mods))


def _feature_info(model: nn.Module, ends: Sequence[str], key: str) -> list[int]:
    entries = {e["module"]: e[key] for e in _info_entries(model)}
    return [int(entries[e]) for e in ends]


def _indices(model: nn.Module, ends: Sequence[str]) -> list[int]:
    names = [e["module"] for e in _info_entries(model)]
    return [names.index(e) for e in ends]


def _reads_values(exc: BaseException) -> bool:
    """Whether an error comes from reading tensor values the meta device does not have."""
    return "meta tensors" in str(exc) or ".item()" in str(exc)


def _reference_shapes(
    model: nn.Module, x: torch.Tensor, ends: Sequence[str], size: tuple[int, int]
) -> list[tuple[int, ...]]:
    """The NCHW shapes ``forward_intermediates`` gives at the stage ends.

    A model that recovers its grid from tensor values to return NCHW maps (a
    ``.item()``, which meta tensors cannot answer) is asked for timm's other
    format, NLC tokens, and each ``(B, N, C)`` is read as the ``(B, C, rows, cols)``
    grid that feature_info's reduction gives, when the token count is that grid's.

    Raises:
        ModelReadError: forward_intermediates fails, or gives another number of
            outputs than there are stages.
    """
    indices = _indices(model, ends)
    try:
        reference = model.forward_intermediates(x, indices=indices, intermediates_only=True)
        shapes = [tuple(int(d) for d in t.shape) for t in reference]
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot check"
        if not _reads_values(exc):
            raise ModelReadError(f"its forward_intermediates fails on a sample input ({type(exc).__name__})") from exc
        try:
            tokens = model.forward_intermediates(x, indices=indices, intermediates_only=True, output_fmt="NLC")
        except Exception as again:  # noqa: BLE001
            raise ModelReadError("its forward_intermediates reads tensor values (.item()), which the meta device "
                                 "does not have, so tasgen cannot check its stages against it") from again
        shapes = []
        for t, reduction in zip(tokens, _feature_info(model, ends, "reduction"), strict=False):
            if t.dim() != 3:
                shapes.append(tuple(int(d) for d in t.shape))
                continue
            b, n, c = (int(d) for d in t.shape)
            rows, cols = token_grid(size, reduction)
            shapes.append((b, c, rows, cols) if rows * cols == n else (b, n, c))
    if len(shapes) != len(ends):
        raise ModelReadError(f"forward_intermediates gave {len(shapes)} outputs for {len(ends)} stages")
    return shapes


def _run_parts(model, x, stem_m, stage_m, final_m):
    x = run_modules(model, stem_m, x)
    stem_shape = tuple(x.shape)
    shapes = []
    for mods in stage_m:
        x = run_modules(model, mods, x)
        shapes.append(tuple(x.shape))
    x = run_modules(model, final_m, x)
    return (stem_shape, shapes), x


class _GrownShapes:
    """The stem's and stages' output shapes for an input twice as large, run once when first asked.

    Only outputs whose layout their shape cannot tell (`_ambiguous`) ask, so most
    models are run at one size. A model that refuses the larger input (a fixed
    position embedding) answers None, and its layout is read from the shape alone.
    """

    def __init__(self, run: Callable[[torch.Tensor], tuple[tuple[int, ...], list[tuple[int, ...]]]],
                 x: torch.Tensor) -> None:
        self._run, self._x = run, x
        self._shapes: tuple[tuple[int, ...], list[tuple[int, ...]]] | None = None
        self._asked = False

    def _all(self) -> tuple[tuple[int, ...], list[tuple[int, ...]]] | None:
        if not self._asked:
            self._asked = True
            b, c, h, w = self._x.shape
            try:
                with torch.no_grad():
                    stem, stages = self._run(self._x.new_empty(b, c, 2 * h, 2 * w))
                self._shapes = tuple(stem), [tuple(s) for s in stages]
            except Exception:  # noqa: BLE001 - any failure means "the shape alone decides"
                self._shapes = None
        return self._shapes

    def stem(self) -> tuple[int, ...] | None:
        """The stem's output shape at the larger input."""
        shapes = self._all()
        return None if shapes is None else shapes[0]

    def stage(self, i: int) -> tuple[int, ...] | None:
        """Stage ``i``'s (from 0) output shape at the larger input."""
        shapes = self._all()
        return None if shapes is None or i >= len(shapes[1]) else shapes[1][i]


def _trace_reason(exc: GraphReadError) -> str:
    """One sentence naming the construct that stops tracing, for a user."""
    cause = exc.__cause__
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    if "Proxy" in text or "TraceError" in text or "symbolically traced" in text:
        return ("its forward_features has control flow that depends on tensor values "
                "(torch.fx cannot trace it symbolically)")
    if "meta tensors" in text or ".item()" in text:
        return "its forward_features reads tensor values (.item()), which the meta device does not have"
    return f"torch.fx cannot trace its forward_features ({type(cause or exc).__name__})"


def _read_graph(model: nn.Module, *, name: str, source: str, image_size: int) -> StageTable:
    """Read a model as its traced ``forward_features`` cut after each stage end."""
    x, cfg = _sample(model, image_size)
    size = (image_size, image_size)
    model.eval()
    ends = _stage_ends(model)
    try:
        gm = graph.trace(model, ends, size)
    except GraphReadError as exc:
        raise GraphReadError(_trace_reason(exc)) from exc
    with torch.no_grad():
        try:
            values = graph.shapes(gm, x)
        except Exception as exc:  # noqa: BLE001
            if _reads_values(exc):
                raise GraphReadError(_trace_reason(GraphReadError(str(exc)))) from exc
            raise GraphReadError(
                f"its forward_features fails on a {image_size} px input ({type(exc).__name__}); "
                "try the image size the model is built for"
            ) from exc
        try:
            reference = _reference_shapes(model, x, ends, size)
        except ModelReadError as exc:
            raise GraphReadError(str(exc)) from exc
        features = model.forward_features(x)
        final_map, final_item = _final_map(model, features)
        pooled, logits = _head_outputs(model, features, name=name, source=source)
    infos = _feature_info(model, ends, "num_chs")
    reductions = _feature_info(model, ends, "reduction")

    def accepts(i: int, t: torch.Tensor) -> bool:
        try:
            layout, _, red, _ = _layout(tuple(t.shape), infos[i], reductions[i], size)
        except ModelReadError:
            return False
        return _nchw(tuple(t.shape), layout, token_grid(size, red))[1:] == reference[i][1:]

    def stem_accepts(t: torch.Tensor) -> bool:
        try:
            _layout(tuple(t.shape), None, reductions[0], size)
        except ModelReadError:
            return False
        return True

    cuts = [graph.stem_cut(model, gm, values, ends, stem_accepts), *graph.find_cuts(model, gm, values, ends, accepts)]
    parts = graph.split(gm, cuts)
    try:
        with torch.no_grad():
            state: object = x
            for part in parts:
                state = part(*state) if isinstance(state, tuple) else part(state)
    except Exception as exc:  # noqa: BLE001
        raise GraphReadError("its parts fail when run in turn (a value crossing a cut is changed in place)") from exc
    if _shapes_of(state) != _shapes_of(features):
        raise GraphReadError("its parts, run in turn, do not give forward_features' output")

    def params(part) -> int:
        mods = graph.called_modules(part)
        tensors = [t for t in (_attr(model, p) for p in graph.attributes(part)) if isinstance(t, nn.Parameter)]
        holder = nn.Module()
        holder.mods = nn.ModuleList(_mods(model, mods))
        holder.tensors = nn.ParameterList(tensors)
        return count_params([holder])

    shapes = [tuple(graph.value_of(values, c.carry[0]).shape) for c in cuts]

    def cut_shapes(x2: torch.Tensor) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
        at = graph.shapes(gm, x2)
        grown_shapes = [tuple(graph.value_of(at, c.carry[0]).shape) for c in cuts]
        return grown_shapes[0], grown_shapes[1:]

    grown = _GrownShapes(cut_shapes, x)
    stem_mods = graph.called_modules(parts[0])
    if hasattr(model, POS_EMBED_METHOD):
        stem_mods = [POS_EMBED_METHOD if a == "pos_drop" else a for a in stem_mods]
    layout, ch, red, prefix = _layout(shapes[0], None, reductions[0], size,
                                      grown.stem() if _ambiguous(shapes[0], None) else None)
    stem = Part(modules=stem_mods, channels=ch, reduction=red, layout=layout, prefix_tokens=prefix,
                params=params(parts[0]), cut=cuts[0].cut, carry=cuts[0].carry)
    stages = []
    for i, (shape, part, cut) in enumerate(zip(shapes[1:], parts[1:-1], cuts[1:], strict=True)):
        layout, ch, red, prefix = _layout(shape, infos[i], reductions[i], size,
                                          grown.stage(i) if _ambiguous(shape, infos[i]) else None)
        mods = graph.called_modules(part)
        modules = _mods(model, mods)
        stages.append(Stage(index=i + 1, modules=mods, channels=ch, reduction=red, layout=layout,
                            prefix_tokens=prefix, params=params(part), mixer=detect_mixer(modules),
                            depth=_depth(model, mods), cut=cut.cut, carry=cut.carry))
    final_mods = graph.called_modules(parts[-1])
    f_layout, f_channels, f_prefix = _final_layout(tuple(final_map.shape), model, reductions[-1], size,
                                                   last_channels=stages[-1].channels)
    total = count_params([model])
    head_params = total - stem.params - sum(s.params for s in stages)
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return StageTable(
        model=name, source=source, family=type(model).__name__, input_size=(int(x.shape[1]), *size),
        mean=mean, std=std, stem=stem, stages=stages,
        head=Head(final_modules=final_mods, feature_channels=f_channels, feature_layout=f_layout,
                  feature_prefix_tokens=f_prefix, feature_item=final_item, num_features=int(pooled.shape[-1]),
                  num_classes=int(logits.shape[-1]), params=head_params),
        params=total, reader="graph",
    )


def _check_features(model: nn.Module, features: object) -> None:
    """A chain of modules gives one final map; a model that gives a list is read as a graph."""
    if not isinstance(features, torch.Tensor):
        raise ModelReadError(f"{type(model).__name__}'s forward_features returns a {type(features).__name__}")


def _final_map(model: nn.Module, features: object) -> tuple[torch.Tensor, int | None]:
    """forward_features' final feature map, and its index when it returns a list or tuple.

    A head that fuses every stage (EfficientViM) takes a list whose last item is the
    final map; the items before it are side outputs the head alone reads.
    """
    if isinstance(features, torch.Tensor):
        return features, None
    if isinstance(features, (list, tuple)) and features and all(isinstance(t, torch.Tensor) for t in features):
        return features[-1], len(features) - 1
    raise NotAChainError(
        f"{type(model).__name__}'s forward_features returns a {type(features).__name__}, not a feature map "
        "or a list of them; tasgen needs a final feature map to pool and distil"
    )


def _shapes_of(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shapes_of(v) for v in value]
    return type(value)


def _final_layout(
    shape: tuple[int, ...], model: nn.Module, reduction: int, size: tuple[int, int], last_channels: int | None = None
) -> tuple[Layout, int, int]:
    """Layout, channels and prefix tokens of forward_features' final map.

    A model whose forward_features returns class tokens only (PiT) has no grid:
    its tokens are pooled as they are. A map flattened channels first, (B, C,
    H * W) with C the last stage's width, is NCL.
    """
    rows, cols = token_grid(size, reduction)
    if len(shape) == 3 and shape[1] == last_channels and shape[2] == rows * cols and shape[1] != shape[2]:
        return "NCL", shape[1], 0
    try:
        layout, channels, _, prefix = _layout(shape, getattr(model, "num_features", None), reduction, size)
    except ModelReadError:
        if len(shape) != 3:
            raise
        layout, channels, prefix = "NLC", shape[-1], 0
    return layout, channels, prefix


def _attr(model: nn.Module, path: str) -> object:
    owner, _, field = path.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, field)


def graph_parts(model: nn.Module, table: StageTable, bind: bool = True) -> list:
    """The parts (stem, stages, final) of a graph-read table, as GraphModules.

    The model is traced again exactly as it was read, and cut after the nodes
    the table names. With ``bind``, every part reads the model's own modules,
    parameters and buffers when it runs (see ``graph.bind``).
    """
    ends = _stage_ends(model)
    gm = graph.trace(model, ends, tuple(table.input_size[1:]))
    cuts = [graph.Cut(cut=p.cut or "", carry=list(p.carry)) for p in (table.stem, *table.stages)]
    parts = graph.split(gm, cuts)
    return [graph.bind(part, model) for part in parts] if bind else parts
