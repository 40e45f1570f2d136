"""`tasgen emit`: the assistant as a standalone, readable Python file.

The file imports only torch and timm. It rebuilds the two source models (timm, or
the stage-described backbone whose code it carries), names every part of the
assistant's forward pass with where it comes from, and converts a
DistillationSystem state_dict so that the file reproduces the in-memory assistant.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import textwrap
from types import ModuleType

from tasgen.arch.table import POS_EMBED_METHOD, StageTable, is_method, token_grid
from tasgen.emit.feature import classifier_of, final_map_shape, one_pass_classifier
from tasgen.plan import Plan
from tasgen.spec.schema import BackboneSpec, Spec, TimmModelSpec


def _definitions(module: ModuleType) -> str:
    """A module's top-level definitions, without its docstring and imports."""
    text = inspect.getsource(module)
    tree = ast.parse(text)
    lines = text.splitlines()
    chunks = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        chunks.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n\n\n".join(chunks)


def _library_source(with_backbone: bool) -> str:
    from tasgen import backbone
    from tasgen.blocks import attention, conv, head, mixer, mlp, norm, patch, tokens, window

    modules = [mlp, attention, window]
    if with_backbone:
        modules = [mlp, norm, conv, attention, patch, tokens, mixer, head, window, backbone]
    return "\n\n\n".join(f"# ---- the definitions of {m.__name__}\n" + _definitions(m)
                         for m in modules)


def _model_factory(role: str, model: TimmModelSpec | BackboneSpec, plan: Plan) -> str:
    if isinstance(model, TimmModelSpec):
        kwargs = dict(model.kwargs)
        kwargs.setdefault("num_classes", plan.num_classes)
        return (f"def build_{role}() -> nn.Module:\n"
                f'    """The {role}: timm {model.timm}."""\n'
                f"    kwargs = {kwargs!r}\n"
                f"    try:\n"
                f"        return timm.create_model({model.timm!r}, img_size={plan.image_size}, **kwargs)\n"
                f"    except TypeError:\n"
                f"        return timm.create_model({model.timm!r}, **kwargs)\n")
    spec = json.dumps(model.model_dump(mode="json", exclude={"checkpoint"}))
    return (f"def build_{role}() -> nn.Module:\n"
            f'    """The {role}: a stage-described backbone."""\n'
            f"    spec = _namespace(json.loads({spec!r}))\n"
            f"    return Backbone(spec, num_classes={plan.num_classes}, img_size={plan.image_size})\n")


def _calls(owner: str, modules: list[str]) -> list[str]:
    out = []
    for path in modules:
        if is_method(path):
            out.append(f"x = self.{owner}.{path}(x)")
        else:
            out.append(f"x = self.{owner}.get_submodule({path!r})(x)")
    return out


def _part_name(role: str, index: int | str) -> str:
    return f"{role}_{index}" if isinstance(index, str) else f"{role}_stage{index}"


def _run_part(owner: str, role: str, table: StageTable, index: int | str) -> list[str]:
    """Lines that run one part of a table (index: "stem", a 1-based stage, or "final") on ``x``."""
    if table.reader != "graph":
        modules = (table.stem.modules if index == "stem" else table.head.final_modules if index == "final"
                   else table.stages[index - 1].modules)
        return _calls(owner, modules)
    # A graph part takes what the previous one carried across its cut.
    if index == "stem":
        carried = 1
    else:
        previous = table.stages[-1] if index == "final" else table.stage_input(index)
        carried = len(previous.carry)
    return [f"x = {_part_name(role, index)}(self.{owner}, {'*x' if carried > 1 else 'x'})"]


def _graph_source(spec: Spec, plan: Plan, uses: dict[str, list[int | str]]) -> tuple[str, list[str]]:
    """The graph parts the assistant runs, as functions of the model, and the imports they need."""
    from torch.fx.graph import _custom_builtins

    from tasgen.arch import graph
    from tasgen.arch.introspect import graph_parts
    from tasgen.arch.models import create_model

    functions, imports, names = [], [], {}
    for role, indices in uses.items():
        table = plan.table(role)
        model = create_model(getattr(spec, role), num_classes=plan.num_classes, image_size=plan.image_size,
                             device="meta")
        stem, *stages, final = graph_parts(model, table, bind=False)
        by_index = {"stem": stem, "final": final, **{i + 1: p for i, p in enumerate(stages)}}
        for index in indices:
            text, needed = graph.source(by_index[index], _part_name(role, index))
            where = "stem" if index == "stem" else "final part" if index == "final" else f"stage {index}"
            functions.append(f"# {where} of the {role} {table.model}: a piece of its traced forward_features "
                             "(`self` is the model)\n" + text.strip())
            for name, obj in needed.items():
                if names.setdefault(name, obj) is not obj:
                    raise ValueError(f"two graph parts need different objects named {name}")
    for name, obj in sorted(names.items()):
        if name in _custom_builtins:
            imports.append(_custom_builtins[name].import_str)
        elif isinstance(obj, ModuleType):
            imports.append(f"import {obj.__name__}" + ("" if obj.__name__ == name else f" as {name}"))
        elif getattr(builtins, name, None) is obj:
            continue
        else:
            module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
            if not module or "." in qualname or "<" in qualname:
                raise ValueError(f"a graph part calls {obj!r}, which the emitted file cannot import")
            imports.append(f"from {module} import {qualname}" + ("" if qualname == name else f" as {name}"))
    return "\n\n\n".join(functions), sorted(set(imports))


def assistant_source(spec: Spec, plan: Plan) -> str:
    """The standalone source of the assistant a spec compiles to."""
    b = plan.bridge
    local = plan.table(plan.local_role)
    glob = plan.table(plan.global_role)
    carries = bool(glob.stage_input(plan.global_start).extras)
    header = [f'"""The TAS assistant of spec {plan.name!r}, emitted by tasgen from plan {plan.hash}.', ""]
    header.append("Parts, in order:")
    for part in plan.assistant:
        src = "new" if part.source == "new" else f"{part.source} {plan.table(part.source).model}"
        header.append(f"  {part.name:8s} {src:40s} {part.mixer:9s} {part.ownership}")
    header += ["", "Input: images normalised as the local member expects",
               f"(mean {local.mean}, std {local.std}), {plan.image_size} px.",
               "Weights: a trained run's whole assistant, from `tasgen export RUN --part assistant",
               "-o assistant.safetensors`, loads as is:",
               "    Assistant().load_state_dict(safetensors.torch.load_file('assistant.safetensors'))",
               "or, from a DistillationSystem's state_dict (teacher, student and bridge together):",
               "    Assistant().load_system_state_dict(state)", '"""']
    uses_backbone = any(isinstance(getattr(spec, r), BackboneSpec) for r in ("teacher", "student"))

    forward_local = ["x = images"]
    forward_local += [f"# stem: {plan.local_role} {local.model}"] + _run_part("local", plan.local_role, local, "stem")
    for s in local.stages[: plan.split]:
        forward_local.append(f"# stage {s.index}: {plan.local_role} {local.model} ({s.mixer})")
        forward_local += _run_part("local", plan.local_role, local, s.index)
    forward_local.append("return x[0]  # the main tensor" if local.stages[plan.split - 1].extras else "return x")
    forward_global = [f"# bridge (new): {b.in_channels}ch /{b.in_reduction} {b.in_layout} -> "
                      f"{b.out_channels}ch /{b.out_reduction} {b.out_layout}", "x = self.bridge(h)"]
    pos_embed = b.out_layout == "NLC" and glob.has_pos_embed
    n = b.out_prefix_tokens
    needs_prefix = (pos_embed or b.out_layout == "NLC") and n > 0 and b.prefix_source == "depth"
    if pos_embed:
        forward_global.append(f"x = self.glob.{POS_EMBED_METHOD}(x)  # {plan.global_role}'s positions (and its input-level prefix tokens)")
        if glob.reader == "graph":
            forward_global.append("x = x[0] if isinstance(x, tuple) else x  # (tokens, rope table): the rope is recomputed")
    grid = f"x[:, {n}:]" if pos_embed else "x"
    if n and b.out_layout == "NLC" and b.prefix_source == "pooled":
        forward_global.append(f"x = torch.cat([{grid}.mean(1, keepdim=True).expand(-1, {n}, -1), {grid}], dim=1)"
                              "  # prefix tokens: the mean grid token")
    elif needs_prefix:
        forward_global.append(f"x = torch.cat([prefix.to(x.dtype), {grid}], dim=1)"
                              f"  # prefix tokens: {plan.global_role}'s own, at this depth")
    if carries:
        forward_global.append(f"x = (x, *carry)  # what stage {plan.global_start} reads besides its input: "
                              f"{plan.global_role}'s own, at this depth")
    for s in glob.stages[plan.global_start - 1 :]:
        forward_global.append(f"# stage {s.index}: {plan.global_role} {glob.model} ({s.mixer})")
        forward_global += _run_part("glob", plan.global_role, glob, s.index)
    forward_global.append(f"# final and head: {plan.global_role} {glob.model}")
    forward_global += _run_part("glob", plan.global_role, glob, "final")
    if plan.feature.get("pool", "avg") == "avg":
        final = "x" if glob.head.feature_item is None else f"x[{glob.head.feature_item}]"
        pooled = {"NCHW": f"{final}.mean((2, 3))", "NHWC": f"{final}.mean((1, 2))", "NCL": f"{final}.mean(2)",
                  "NLC": f"{final}[:, {glob.head.feature_prefix_tokens}:].mean(1)"}[glob.head.feature_layout]
        forward_global.append(f"return self.glob.forward_head(x), {pooled}  # logits, final map average pooled")
    else:
        forward_global += ["feature = self.glob.forward_head(x, pre_logits=True)",
                           "if self.classifier[0] is not None:  # one head pass: the logits from the same feature",
                           "    return self.classifier[0](feature), feature",
                           "return self.glob.forward_head(x), feature"]
    global_prefix = [f"# {plan.global_role} {glob.model}'s prefix tokens entering stage {plan.global_start}",
                     "x = images * self.renorm_scale + self.renorm_shift  # its own normalisation"]
    global_prefix += _run_part("glob", plan.global_role, glob, "stem")
    for s in glob.stages[: plan.global_start - 1]:
        global_prefix += _run_part("glob", plan.global_role, glob, s.index)
    global_carry = [line.replace("prefix tokens", "values besides its input") for line in global_prefix]
    global_prefix.append(f"return x[0][:, :{n}]" if carries else f"return x[:, :{n}]")
    global_carry.append("return tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in x[1:])")

    def method(name: str, args: str, ret: str, doc: str, lines: list[str]) -> str:
        inner = "\n".join(lines)
        return (f"    def {name}(self, {args}) -> {ret}:\n        \"\"\"{doc}\"\"\"\n"
                + textwrap.indent(inner, " " * 8) + "\n")

    renorm = ([sl / sg for sl, sg in zip(local.std, glob.std, strict=True)],
              [(ml - mg) / sg for ml, mg, sg in zip(local.mean, glob.mean, glob.std, strict=True)])
    prefix = {"teacher": "teacher.", "student": "student."}
    assistant_cls = (
        "class Assistant(nn.Module):\n"
        f'    """{plan.local_role} {local.model} stages 1-{plan.split} -> bridge -> '
        f'{plan.global_role} {glob.model} stages {plan.global_start}-{len(glob.stages)} -> head."""\n\n'
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        f"        self.local = build_{plan.local_role}()  # parts used: stem, stages 1-{plan.split}\n"
        f"        self.glob = build_{plan.global_role}()  # parts used: stages {plan.global_start}-, final, head\n"
        f"        self.bridge = Bridge()\n"
        + (f"        # the classifier that makes the logits from the pre-logits feature, if one does\n"
           f"        # (a tuple, so that it is not registered twice as a submodule)\n"
           f"        self.classifier = (one_pass_classifier(self.glob, {_final_sample(glob)}),)\n"
           if plan.feature.get("pool", "avg") != "avg" else "")
        + (f"        self.register_buffer('renorm_scale', torch.tensor({renorm[0]!r}).view(1, -1, 1, 1), persistent=False)\n"
           f"        self.register_buffer('renorm_shift', torch.tensor({renorm[1]!r}).view(1, -1, 1, 1), persistent=False)\n"
           if needs_prefix or carries else "")
        + "\n"
        + method("local_features", "images: torch.Tensor", "torch.Tensor", "Local stem and stages.", forward_local)
        + "\n"
        + method("global_head", "h: torch.Tensor, prefix: torch.Tensor | None = None, carry: tuple = ()",
                 "tuple[torch.Tensor, torch.Tensor]",
                 "Bridge, global stages and head: (logits, pooled feature).", forward_global)
        + "\n"
        + (method("global_prefix", "images: torch.Tensor", "torch.Tensor",
                  "The global member's own prefix tokens at the bridge's depth.", global_prefix) + "\n"
           if needs_prefix else "")
        + (method("global_carry", "images: torch.Tensor", "tuple",
                  "What the global member's next stage reads besides its input, at the bridge's depth.",
                  global_carry) + "\n"
           if carries else "")
        + "    def forward(self, images: torch.Tensor) -> torch.Tensor:\n"
        + ("        with torch.no_grad():\n"
           + ("            prefix = self.global_prefix(images)\n" if needs_prefix else "")
           + ("            carry = self.global_carry(images)\n" if carries else "")
           + "        return self.global_head(self.local_features(images)"
           + (", prefix" if needs_prefix else ", None") + (", carry" if carries else "") + ")[0]\n\n"
           if needs_prefix or carries else "        return self.global_head(self.local_features(images))[0]\n\n")
        + "    def load_system_state_dict(self, state: dict[str, torch.Tensor]) -> None:\n"
        '        """Load the weights of a tasgen DistillationSystem (student, teacher, bridge)."""\n'
        f"        local, glob = {prefix[plan.local_role]!r}, {prefix[plan.global_role]!r}\n"
        + ("        if any(k.startswith('assistant.teacher_copy.') for k in state):\n"
           f"            {'glob' if plan.global_role == 'teacher' else 'local'} = 'assistant.teacher_copy.'\n")
        + "        mapped = {}\n"
        "        for key, value in state.items():\n"
        "            for src, dst in ((local, 'local.'), (glob, 'glob.'), ('assistant.bridge.', 'bridge.')):\n"
        "                if key.startswith(src):\n"
        "                    mapped[dst + key[len(src):]] = value\n"
        "        self.load_state_dict(mapped, strict=True)\n"
    )
    grid_in = token_grid(plan.image_size, b.in_reduction)[0]
    to_nchw = {"NCHW": "x", "NHWC": "x.permute(0, 3, 1, 2)",
               "NLC": f"x[:, {b.in_prefix_tokens}:].transpose(1, 2).reshape(x.shape[0], {b.in_channels}, "
                      f"{grid_in}, {grid_in})"}[b.in_layout]
    kernel = round(b.out_reduction / b.in_reduction) if b.resample == "conv" else 1
    out_grid = token_grid(plan.image_size, b.out_reduction)[0]
    resample = (f"        x = F.interpolate(x, size=({out_grid}, {out_grid}), mode='bilinear', align_corners=False)\n"
                if b.resample == "interpolate" else "")
    emit_out = {"NHWC": "x", "NCHW": "x.permute(0, 3, 1, 2)", "NLC": "x.flatten(1, 2)"}[b.out_layout]
    if pos_embed and _glob_dynamic(spec, plan):
        emit_out = "x"  # a ViT with dynamic_img_size takes (B, H, W, C) in _pos_embed
    bridge_cls = (
        "class Bridge(nn.Module):\n"
        f'    """Local-to-global projector: {b.resample} resampling, then one windowed attention block."""\n\n'
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        f"        self.proj = nn.Conv2d({b.in_channels}, {b.out_channels}, kernel_size={kernel}, stride={kernel})\n"
        f"        self.block = WindowAttentionBlock({b.out_channels}, {b.heads}, {b.window_size}, {b.mlp_ratio})\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        + ("" if b.in_layout == "NCHW" else f"        x = {to_nchw}\n") + resample +
        "        x = self.proj(x)\n"
        "        x = self.block(x.permute(0, 2, 3, 1))\n"
        f"        return {emit_out}\n"
    )
    helpers = (
        inspect.getsource(classifier_of) + "\n\n" + inspect.getsource(one_pass_classifier) + "\n\n"
        "def _namespace(value):\n"
        "    if isinstance(value, dict):\n"
        "        return types.SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})\n"
        "    if isinstance(value, list):\n"
        "        return [_namespace(v) for v in value]\n"
        "    return value\n"
    )
    imports = ("from __future__ import annotations\n\nimport inspect\nimport json\nimport math\nimport types\n"
               "from typing import Any\n\n"
               "import timm\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n")
    uses: dict[str, list[int | str]] = {}
    if local.reader == "graph":
        uses[plan.local_role] = ["stem", *range(1, plan.split + 1)]
    if glob.reader == "graph":
        early = ["stem", *range(1, plan.global_start)] if needs_prefix or carries else []
        uses[plan.global_role] = [*early, *range(plan.global_start, len(glob.stages) + 1), "final"]
    parts = []
    if uses:
        graph_functions, graph_imports = _graph_source(spec, plan, uses)
        imports += "\n".join(i for i in graph_imports if i not in imports.splitlines()) + "\n"
        parts = ["# ---- parts of the models read as graphs (torch.fx code of their forward_features)\n"
                 + graph_functions]
    sections = ["\n".join(header), imports, _library_source(uses_backbone), helpers,
                _model_factory("teacher", spec.teacher, plan), _model_factory("student", spec.student, plan),
                *parts, bridge_cls, assistant_cls]
    return "\n\n".join(s.rstrip() + "\n" for s in sections)


def _final_sample(table: StageTable) -> str:
    """Source of ``feature.sample_final_map`` for ``table``: zeros of its final map's shape, or None."""
    shape = final_map_shape(table)
    return "None" if shape is None else f"torch.zeros(2, *{shape!r})"


def _glob_dynamic(spec: Spec, plan: Plan) -> bool:
    model = getattr(spec, plan.global_role)
    return isinstance(model, TimmModelSpec) and bool(model.kwargs.get("dynamic_img_size", False))
