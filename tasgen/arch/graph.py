"""Read a model's ``forward_features`` as a graph and cut it into stem, stages and final.

Where a model's forward does work between its modules (a flatten between stem and
stages, a class token concatenated halfway, ``H, W`` passed to every block, a rope
table returned by ``_pos_embed``), running its modules as a chain loses that work.
Here ``forward_features`` is traced with torch.fx instead, with timm's own
registrations of modules and functions that must stay opaque (those of
``timm.layers._fx``, as timm's ``FeatureGraphNet`` traces). Every submodule that
is not an ancestor of a stage end stays one opaque call, so the graph holds only
the model's own glue code between its blocks.

The graph is then cut after the node that ends each stage. Each part is a
``GraphModule`` that carries its glue code and, once bound (``bind``), reads the
model's own submodules, parameters and buffers when it runs (the same objects,
so a shared stage is the model's own).
What crosses a cut besides the main tensor (``H, W``, a class token, the other
branches of a multi-resolution model) is passed on explicitly: a part returns
``(main, *carry)`` and the next part takes them as arguments. Values that do not
depend on the input (position embeddings, rope tables computed from buffers) are
recomputed where they are used instead of being carried.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from tasgen.arch.table import resolve

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class GraphReadError(Exception):
    """``forward_features`` cannot be traced or cut into a chain of parts."""


def _is_ancestor(parent: str, child: str) -> bool:
    return child.startswith(parent + ".")


def _timm_registrations() -> tuple[set[type], tuple[Callable, ...]]:
    try:
        from timm.layers import _fx
    except ImportError:  # an older timm: nothing registered
        return set(), ()
    modules = set(getattr(_fx, "_leaf_modules", ()))
    functions = tuple(f for f in getattr(_fx, "_autowrap_functions", ()) if callable(f))
    return modules, functions


class _Tracer(fx.Tracer):
    """Traces through the model and the ancestors of its stage ends, nothing else."""

    def __init__(self, ends: Sequence[str]) -> None:
        leaves, functions = _timm_registrations()
        super().__init__(autowrap_modules=(math,), autowrap_functions=functions)
        self.ends = tuple(ends)
        self.leaf_types = leaves
        self.traced_func_name = "forward_features"

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m) in self.leaf_types:
            return True
        return not any(_is_ancestor(module_qualified_name, end) for end in self.ends)


def _meta(v: Any) -> Any:
    """A value with every tensor replaced by an empty one of its shape on the meta device."""
    return torch.utils._pytree.tree_map(
        lambda t: torch.empty_like(t, device="meta") if isinstance(t, torch.Tensor) else t, v
    )


_UNKNOWN = object()  # a value the shape tracer could not compute


class _ShapeProxy(fx.Proxy):
    def __len__(self) -> int:
        value = self.node.meta.get("shape_value")
        if isinstance(value, (tuple, list, torch.Size)):
            return len(value)
        return super().__len__()


class _ShapeTracer(_Tracer):
    """A tracer that also runs every op on meta tensors while it traces.

    Knowing each value's shape, it can unpack a tuple a module returned
    (``x, size = embed(x)``; ``reshape(B, *size, -1)``) and take branches that
    depend on shapes only (``if x.ndim != 4``). The graph is then the forward
    for inputs of the example's shape, which is what a stage table describes.
    Branches on tensor values still fail.
    """

    def __init__(self, ends: Sequence[str], model: nn.Module, example: torch.Tensor) -> None:
        super().__init__(ends)
        self.model = model
        self.example = example

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShapeProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # noqa: ANN001, ANN201
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        value = self._value(kind, target, args, kwargs)
        if value is None and kind == "call_function" and target is operator.getitem:
            # An item known to be None (Gemma-4's padding positions for a plain image): the
            # model's own `is not None` checks then take the branch they take at run time.
            return None
        proxy.node.meta["shape_value"] = None if value is _UNKNOWN else value
        return proxy

    def _value(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        def unwrap(a: Any) -> Any:
            return a.node.meta.get("shape_value") if isinstance(a, fx.Proxy) else a

        args, kwargs = torch.fx.node.map_aggregate((args, kwargs), unwrap)
        args, kwargs = _meta(tuple(list(a) if isinstance(a, list) else a for a in args)), _meta(kwargs)
        # Run the op as it is, not through the tracer's patches of Module.__call__.
        unpatched = getattr(torch.fx._symbolic_trace, "_maybe_revert_all_patches", contextlib.nullcontext)
        with unpatched():
            return self._run(kind, target, args, kwargs)

    def _run(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        try:
            if kind == "placeholder":
                return self.example if not args else args[0]
            if kind == "get_attr":
                owner, _, field = str(target).rpartition(".")
                return _meta(getattr(self.model.get_submodule(owner) if owner else self.model, field))
            if kind == "call_function":
                return target(*args, **kwargs)
            if kind == "call_method":
                return getattr(args[0], target)(*args[1:], **kwargs)
            if kind == "call_module":
                module = self.model.get_submodule(str(target))
                state = {k: _meta(v) for k, v in {**dict(module.named_parameters()),
                                                   **dict(module.named_buffers())}.items()}
                return torch.func.functional_call(module, state, args, kwargs)
        except Exception:  # noqa: BLE001 - an unknown value only matters if tracing needs it
            return _UNKNOWN
        return _UNKNOWN

    def iter(self, obj: fx.Proxy) -> Any:
        value = obj.node.meta.get("shape_value")
        if isinstance(value, (tuple, list, torch.Size)):
            return iter([obj[i] for i in range(len(value))])
        return super().iter(obj)

    def to_bool(self, obj: fx.Proxy) -> bool:
        value = obj.node.meta.get("shape_value")
        if isinstance(value, bool):
            return value
        return super().to_bool(obj)


def trace(model: nn.Module, ends: Sequence[str], image_size: tuple[int, int] | None = None) -> fx.GraphModule:
    """Symbolically trace ``model.forward_features`` (in eval mode) down to the stage ends.

    Optional arguments of ``forward_features`` are fixed to their defaults. When a
    plain trace fails and ``image_size`` is given, the model is traced again with
    shapes known (``_ShapeTracer``), for inputs of that size.
    """
    params = list(inspect.signature(model.forward_features).parameters.values())
    concrete = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
    training = model.training
    model.eval()  # glue that branches on self.training is read as at inference
    try:
        try:
            graph = _Tracer(ends).trace(model, concrete_args=concrete or None)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot trace" this way
            if image_size is None:
                raise GraphReadError(f"{type(exc).__name__}: {exc}") from exc
            cfg = getattr(model, "pretrained_cfg", None) or {}
            example = torch.empty(1, int(cfg.get("input_size", (3,))[0]), *image_size, device="meta")
            try:
                graph = _ShapeTracer(ends, model, example).trace(model, concrete_args=concrete or None)
            except Exception as exc2:  # noqa: BLE001
                raise GraphReadError(f"{type(exc2).__name__}: {exc2}") from exc2
    finally:
        model.train(training)
    for n in graph.nodes:
        n.meta.pop("shape_value", None)
    return fx.GraphModule(model, graph, class_name=type(model).__name__ + "Features")


class _Chain(nn.Module):
    """Calls a model's modules (or methods, names starting with ``_``) in turn."""

    def __init__(self, model: nn.Module, modules: Sequence[str]) -> None:
        super().__init__()
        self.m = model
        self.paths = list(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for path in self.paths:
            x = resolve(self.m, path)(x)
        return x


def _ops(graph: fx.Graph, prefix: str = "") -> list[tuple[str, str]]:
    """The ops of a graph that compute something, as (op, target) with ``prefix`` removed."""
    ops = []
    for n in graph.nodes:
        if n.op in ("placeholder", "output") or not (n.users or n.op == "call_module"):
            continue
        if n.op in ("call_module", "get_attr"):
            target = str(n.target).removeprefix(prefix)
        else:
            target = getattr(n.target, "__name__", str(n.target))
        ops.append((n.op, target))
    return ops


def same_ops(model: nn.Module, ends: Sequence[str], modules: Sequence[str]) -> bool:
    """Whether calling ``modules`` in turn computes what ``forward_features`` does.

    Both are traced the same way and compared op by op; glue code that
    ``forward_features`` runs between modules (Visformer adds position
    embeddings between its stages) makes them differ. A model that cannot be
    traced counts as the same: there is nothing to compare.
    """
    training = model.training
    model.eval()
    try:
        features = _Tracer(ends).trace(model)
        tracer = _Tracer([f"m.{e}" for e in ends])
        tracer.traced_func_name = "forward"
        chain = tracer.trace(_Chain(model, modules))
    except Exception:  # noqa: BLE001
        return True
    finally:
        model.train(training)
    return _ops(features) == _ops(chain, "m.")


@dataclass
class Cut:
    """Where one part ends: after node ``cut``; ``carry[0]`` is the main tensor."""

    cut: str
    carry: list[str] = field(default_factory=list)


def _depends_on_input(nodes: Sequence[fx.Node]) -> dict[fx.Node, bool]:
    dep: dict[fx.Node, bool] = {}
    for n in nodes:
        dep[n] = n.op == "placeholder" or any(dep.get(a, False) for a in n.all_input_nodes)
    return dep


def _last_use(nodes: Sequence[fx.Node]) -> dict[fx.Node, int]:
    index = {n: i for i, n in enumerate(nodes)}
    return {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}


def live_after(nodes: Sequence[fx.Node], k: int) -> list[fx.Node]:
    """Input-dependent values defined at or before node ``k`` and used after it, in order."""
    dep, last = _depends_on_input(nodes), _last_use(nodes)
    return [n for n in nodes[: k + 1] if dep[n] and n.op != "output" and last[n] > k]


def shapes(gm: fx.GraphModule, x: torch.Tensor) -> dict[str, Any]:
    """Run the graph once (on meta tensors) and return every node's value."""
    values: dict[str, Any] = {}

    def plain(args: tuple) -> tuple:
        # The interpreter hands lists over as fx's immutable lists; the generated
        # code passes real ones, which modules such as HRNet's fuse layers modify.
        return tuple(list(a) if isinstance(a, list) else a for a in args)

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            values[n.name] = out
            return out

        def call_module(self, target, args, kwargs):  # noqa: ANN001, ANN202
            return super().call_module(target, plain(args), kwargs)

        def call_function(self, target, args, kwargs):  # noqa: ANN001, ANN202
            return super().call_function(target, plain(args), kwargs)

    _Recorder(gm).run(x)
    return values


def _scope_end(model: nn.Module, nodes: Sequence[fx.Node], i: int, end: str, ends: Sequence[str]) -> int:
    """Index of the last node inside the outermost traced block that contains stage end ``end``.

    A stage end inside a residual block (Xception's ``blocks.1.stack.act3``) is
    moved to the end of that block, where its shortcut has been added.
    """
    blocks = _blocks_around(model, end, ends)
    if blocks:
        while i + 1 < len(nodes) and _inside(nodes[i + 1], blocks[0]):
            i += 1
    return i


def _blocks_around(model: nn.Module, path: str, ends: Sequence[str]) -> list[str]:
    """Ancestors of ``path`` that are blocks, outermost first.

    A block is neither a Sequential/ModuleList container nor a wrapper of several
    stages (an ``encoder`` holding all the blocks).
    """
    parts = path.split(".")
    blocks = []
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth])
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            continue
        if not isinstance(module, _CONTAINERS) and sum(e == prefix or _is_ancestor(prefix, e) for e in ends) <= 1:
            blocks.append(prefix)
    return blocks


def _inside(n: fx.Node, scope: str) -> bool:
    stack = n.meta.get("nn_module_stack") or {}
    return any(p == scope or _is_ancestor(scope, p) for p, _ in stack.values())


def _stage_calls(nodes: Sequence[fx.Node], end: str) -> list[int]:
    return [i for i, n in enumerate(nodes) if n.op == "call_module"
            and (n.target == end or _is_ancestor(end, n.target) or _is_ancestor(n.target, end))]


def stem_cut(
    model: nn.Module, gm: fx.GraphModule, values: dict[str, Any], ends: Sequence[str],
    accepts: Callable[[torch.Tensor], bool],
) -> Cut:
    """The cut before the first stage.

    Its main tensor is the first value the first stage reads that ``accepts``
    takes for a stage input (TNT's patch tokens, not its pixel tokens).

    The first stage also takes the calls of its end module's container that run
    before it (ViT's ``blocks.0-2`` for an end at ``blocks.2``), and starts at the
    start of the outermost block that contains them.
    """
    nodes = list(gm.graph.nodes)
    first_end = ends[0]
    hits = _stage_calls(nodes, first_end)
    if not hits:
        raise GraphReadError(f"forward_features never calls stage module '{first_end}'")
    calls = [i for i, n in enumerate(nodes) if n.op == "call_module"]
    p = calls.index(hits[-1])
    parent = str(nodes[calls[p]].target).rpartition(".")[0]
    while parent and p > 0 and str(nodes[calls[p - 1]].target).rpartition(".")[0] == parent:
        p -= 1
    j = calls[p]
    blocks = _blocks_around(model, str(nodes[j].target), ends)
    if blocks:
        while j > 0 and _inside(nodes[j - 1], blocks[0]):
            j -= 1
    first = nodes[j]
    k = max(j - 1, max(i for i, n in enumerate(nodes) if n.op == "placeholder"))
    live = live_after(nodes, k)
    if not live:
        raise GraphReadError("the first stage does not read the stem's output")
    ordered = [a for a in first.all_input_nodes if a in live] + [n for n in live if n not in first.all_input_nodes]
    tensors = [n for n in ordered if isinstance(values.get(n.name), torch.Tensor)]
    main = next((n for n in tensors if accepts(values[n.name])), None)
    if main is None:
        raise GraphReadError("no value before its first stage has the shape of a stage input")
    return Cut(cut=nodes[k].name, carry=[main.name] + [n.name for n in live if n is not main])


def find_cuts(
    model: nn.Module,
    gm: fx.GraphModule,
    values: dict[str, Any],
    ends: Sequence[str],
    accepts: Callable[[int, torch.Tensor], bool],
) -> list[Cut]:
    """The cut after each stage end.

    Args:
        model: the model.
        gm: its traced ``forward_features``.
        values: every node's value on a sample input (``shapes``).
        ends: the stage-end module paths, in order.
        accepts: ``accepts(i, tensor)`` says whether ``tensor`` has the shape timm
            reports for stage ``i`` (0-based); it picks the main tensor among the
            values live at the cut.
    """
    nodes = list(gm.graph.nodes)
    reaches = _reaching_output(nodes)
    cuts: list[Cut] = []
    previous = -1
    for s, end in enumerate(ends):
        hits = _stage_calls(nodes, end)
        if not hits:
            raise GraphReadError(f"forward_features never calls stage module '{end}'")
        k = _scope_end(model, nodes, hits[-1], end, ends)
        # Move on until only tensors, plain numbers and tuples of them (a block's
        # returned pair, passed on item by item) cross the cut.
        while k < len(nodes) - 1 and _crossing(live_after(nodes, k), values) is None:
            k += 1
        crossing = _crossing(live_after(nodes, k), values)
        if k <= previous or crossing is None:
            raise GraphReadError("its stage modules are not called one after another")
        # The main tensor: the one with the shape timm reports for the stage, among
        # those the rest of the forward reads (a stage may also emit a side output).
        main = _main_tensor(nodes, k, ends[s + 1] if s + 1 < len(ends) else None, crossing, reaches,
                            lambda v, s=s: accepts(s, v))
        if main is None:
            raise GraphReadError(f"no value after stage module '{end}' has the shape timm reports for it")
        cuts.append(Cut(cut=nodes[k].name, carry=[main] + [name for name, _ in crossing if name != main]))
        previous = k
    return cuts


def _parse(name: str) -> tuple[str, int | None, type]:
    """A carried name: ``node``, item ``node.i`` of a tuple or item ``node[i]`` of a list."""
    if name.endswith("]"):
        base, _, item = name[:-1].partition("[")
        return base, int(item), list
    base, _, item = name.partition(".")
    return base, (int(item) if item else None), tuple


def value_of(values: dict[str, Any], name: str) -> Any:
    """The value of a carried name in ``shapes``' record."""
    base, item, _ = _parse(name)
    return values[base] if item is None else values[base][item]


def _base(name: str, nodes: Sequence[fx.Node]) -> fx.Node:
    """The node of a carried name."""
    base = _parse(name)[0]
    return next(n for n in nodes if n.name == base)


def _item_reaches(name: str, nodes: Sequence[fx.Node], reaches: dict[fx.Node, bool]) -> bool:
    """Whether a carried value is read on the way to the output.

    An item of a tuple or list counts only when something that reaches the output
    reads it (its ``getitem``) or the whole sequence.
    """
    node = _base(name, nodes)
    if not reaches[node]:
        return False
    whole = [u for u in node.users if not _is_getitem(u)]  # the sequence read as a whole
    return any(reaches[n] for n in (*_item_nodes(node, _parse(name)[1]), *whole))


def _is_getitem(n: fx.Node) -> bool:
    return n.op == "call_function" and n.target is operator.getitem


def _item_nodes(node: fx.Node, item: int | None) -> list[fx.Node]:
    """The nodes that stand for a carried value: ``node`` itself, or its ``getitem`` of ``item``."""
    if item is None:
        return [node]
    return [u for u in node.users if _is_getitem(u) and u.args[1] == item]


def _main_tensor(
    nodes: Sequence[fx.Node], k: int, next_end: str | None, crossing: Sequence[tuple[str, Any]],
    reaches: dict[fx.Node, bool], accepts: Callable[[torch.Tensor], bool],
) -> str | None:
    """The main tensor among the values crossing the cut after node ``k``, or None.

    In order: a value read later with the shape timm reports for the stage; the one
    value the next stage is computed from (the stage end moved to a block's end, or
    timm tapping the map before the stage module's own downsampling, as in
    EfficientViM); after the last stage, a value of timm's shape the final part no
    longer reads (PiT's grid tokens, when only its class token goes on); the only
    tensor read later.
    """
    tensors = [(name, v) for name, v in crossing if isinstance(v, torch.Tensor)]
    read = [(name, v) for name, v in tensors if _item_reaches(name, nodes, reaches)]
    matching = [name for name, v in read if accepts(v)]
    if matching:
        return matching[-1]
    if next_end is not None:
        feeding = _feeding_next_stage(nodes, k, next_end, read)
        if feeding is not None:
            return feeding
    else:
        emitted = [name for name, v in tensors if reaches[_base(name, nodes)] and accepts(v)]
        if emitted:
            return emitted[-1]
    return read[0][0] if len(read) == 1 else None


def _feeding_next_stage(
    nodes: Sequence[fx.Node], k: int, next_end: str, tensors: Sequence[tuple[str, Any]]
) -> str | None:
    """The one tensor among ``tensors`` (crossing the cut after node ``k``) the next stage is computed from."""
    calls = [i for i in _stage_calls(nodes, next_end) if i > k]
    if not calls:
        return None
    ancestors = _ancestors(nodes[calls[0]])
    by_name = {n.name: n for n in nodes}
    feeding = []
    for name, _ in tensors:
        base, item, _ = _parse(name)
        if any(n in ancestors for n in _item_nodes(by_name[base], item)):
            feeding.append(name)
    return feeding[0] if len(feeding) == 1 else None


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _reaching_output(nodes: Sequence[fx.Node]) -> dict[fx.Node, bool]:
    reach = {n: False for n in nodes}
    reach[nodes[-1]] = True
    for n in reversed(nodes):
        if reach[n]:
            for a in n.all_input_nodes:
                reach[a] = True
    return reach


def _plain(v: Any) -> bool:
    if isinstance(v, (torch.Tensor, int, float, bool, type(None), torch.Size)):
        return True
    return isinstance(v, (tuple, list)) and all(isinstance(e, (int, float, bool, type(None))) for e in v)


def _crossing(live: Sequence[fx.Node], values: dict[str, Any]) -> list[tuple[str, Any]] | None:
    """The values crossing a cut, a tuple or list of tensors item by item; None if one is neither."""
    out: list[tuple[str, Any]] = []
    for n in live:
        v = values.get(n.name)
        if _plain(v):
            out.append((n.name, v))
        elif isinstance(v, (tuple, list)) and all(_plain(e) for e in v):
            form = "{}[{}]" if isinstance(v, list) else "{}.{}"
            out.extend((form.format(n.name, i), e) for i, e in enumerate(v))
        else:
            return None
    return out


def split(gm: fx.GraphModule, cuts: Sequence[Cut]) -> list[fx.GraphModule]:
    """Cut a traced ``forward_features`` into parts: stem, one per cut after the first, final.

    Part ``i`` takes the previous part's ``carry`` (main tensor first) and returns
    its own (a bare tensor when nothing but the main tensor crosses the cut).
    Every part holds the model's submodules and parameters by reference.
    """
    nodes = list(gm.graph.nodes)
    by_name = {n.name: n for n in nodes}
    index = {n: i for i, n in enumerate(nodes)}
    dep = _depends_on_input(nodes)
    try:
        bounds = [index[by_name[c.cut]] for c in cuts]
        for c in cuts:
            for name in c.carry:
                _base(name, nodes)
    except (KeyError, StopIteration) as exc:
        raise GraphReadError("the traced graph has no node the stage table names") from exc
    parts = []
    starts = [-1, *bounds]
    ins: list[list[str]] = [[], *(c.carry for c in cuts)]
    outs: list[list[str] | None] = [*(c.carry for c in cuts), None]
    for p, (start, inputs, outputs) in enumerate(zip(starts, ins, outs, strict=True)):
        stop = bounds[p] if p < len(bounds) else len(nodes) - 1
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        items: dict[fx.Node, dict[int, fx.Node]] = {}
        kinds: dict[fx.Node, type] = {}
        for name in inputs:
            base, item, kind = _parse(name)
            holder = graph.placeholder(f"{base}_item{item}" if item is not None else base)
            if item is not None:
                items.setdefault(by_name[base], {})[item] = holder
                kinds[by_name[base]] = kind
            else:
                env[by_name[base]] = holder
        for base, held in items.items():  # a tuple or list crossed item by item: rebuilt here
            elements = [held[i] for i in sorted(held)]
            env[base] = graph.call_function(kinds[base], (elements,))

        def copy(n: fx.Node, graph: fx.Graph = graph, env: dict = env) -> fx.Node:
            if n not in env:
                if dep[n] and n.op != "placeholder":
                    raise GraphReadError(f"value {n.name} is used after a cut but not carried across it")
                env[n] = graph.node_copy(n, copy)  # input-independent: recomputed here
            return env[n]

        for n in nodes[start + 1 : stop + 1]:
            if n not in env:
                env[n] = graph.node_copy(n, copy)
        if outputs is None:
            if nodes[-1] not in env:
                graph.node_copy(nodes[-1], copy)
        else:
            result = []
            for name in outputs:
                base, item, _ = _parse(name)
                value = copy(by_name[base])
                result.append(value if item is None else graph.call_function(operator.getitem, (value, item)))
            graph.output(result[0] if len(result) == 1 else tuple(result))
        name = "Stem" if p == 0 else ("Final" if outputs is None else f"Stage{p}")
        part = fx.GraphModule(gm, graph, class_name=name)
        part.graph.eliminate_dead_code()
        part.recompile()
        parts.append(part)
    return parts


def bind(part: fx.GraphModule, model: nn.Module) -> fx.GraphModule:
    """A copy of ``part`` that reads every submodule, parameter and buffer from ``model`` when it runs.

    The part then follows the model through ``.to(device)`` (which replaces
    buffers) and checkpoint loading, and registers nothing of its own.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in part.graph.nodes:
        env[n] = graph.node_copy(n, lambda a: env[a])
        if n.op in ("call_module", "get_attr"):
            env[n].target = f"model.{n.target}"
    holder = nn.Module()
    holder.model = model
    bound = fx.GraphModule(holder, graph, class_name=type(part).__name__)
    bound.model = model  # the model itself, not the tree of references GraphModule copied
    return bound


def source(part: fx.GraphModule, name: str) -> tuple[str, dict[str, Any]]:
    """A part as a Python function ``name(self, ...)`` whose ``self`` is the model, and its globals."""
    code = part.graph.python_code(root_module="self")
    text = code.src.replace("def forward(self", f"def {name}(self", 1)
    return text, dict(code.globals)


def called_modules(part: fx.GraphModule) -> list[str]:
    """Paths of the submodules a part calls, in order (each once)."""
    seen: list[str] = []
    for n in part.graph.nodes:
        if n.op == "call_module" and n.target not in seen:
            seen.append(str(n.target))
    return seen


def attributes(part: fx.GraphModule) -> list[str]:
    """Paths of the parameters and buffers a part reads directly (``get_attr``)."""
    return [str(n.target) for n in part.graph.nodes if n.op == "get_attr"]
