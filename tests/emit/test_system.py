"""The emitted modules: shapes, gradients, sharing, compile, standalone source."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter

import pytest
import torch
from safetensors.torch import save_file

from tasgen.arch.models import create_model, stage_table
from tasgen.compiler import build_system
from tasgen.emit.source import assistant_source
from tasgen.planner import build_plan
from tasgen.spec.schema import Spec

SIZE = 64
TINY_VIT = {"timm": "vit_tiny_patch16_224", "kwargs": {"depth": 4, "embed_dim": 64, "num_heads": 2}}
STAGED = {"stem": {"channels": 16, "stride": 2},
          "stages": [{"mixer": "conv", "channels": 16, "depth": 1},
                     {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
                     {"mixer": "attention", "channels": 64, "depth": 1, "stride": 2},
                     {"mixer": "mlp", "channels": 64, "depth": 1, "stride": 2}]}

PAIRS = {
    "vit->cnn": ({"timm": "deit_tiny_patch16_224"}, {"timm": "resnet18"}),
    "cnn->vit": ({"timm": "resnet18"}, TINY_VIT),
    "swin->mobilenet": ({"timm": "swin_tiny_patch4_window7_224"}, {"timm": "mobilenetv2_100"}),
    "cnn->mlp": ({"timm": "convnext_atto"}, {"timm": "resmlp_12_224"}),
    "mlp->cnn": ({"timm": "mixer_s16_224"}, {"timm": "resnet10t"}),
    "cnn->cnn": ({"timm": "resnet50"}, {"timm": "resnet18"}),
    "vit->vit": ({"timm": "deit_small_patch16_224"}, {"timm": "deit_tiny_patch16_224"}),
    "hybrid->cnn": ({"timm": "coatnet_nano_rw_224"}, {"timm": "resnet18"}),
    "cnn->distilled-vit": ({"timm": "resnet18"}, {"timm": "deit_tiny_distilled_patch16_224"}),
    "cnn->registers-vit": ({"timm": "resnet10t"}, {**TINY_VIT, "kwargs": {**TINY_VIT["kwargs"], "reg_tokens": 4}}),
    "cnn->staged": ({"timm": "resnet18"}, STAGED),
}


def make(teacher: dict, student: dict, size: int = SIZE, **extra):
    spec = Spec.model_validate({"name": "t", "teacher": teacher, "student": student,
                                "data": {"image_size": size}, **extra})
    tables = {r: stage_table(getattr(spec, r), role=r, num_classes=10, image_size=size) for r in ("teacher", "student")}
    plan = build_plan(spec, tables["teacher"], tables["student"], num_classes=10, image_size=size)
    torch.manual_seed(0)
    t = create_model(spec.teacher, num_classes=10, image_size=size)
    s = create_model(spec.student, num_classes=10, image_size=size)
    return spec, plan, build_system(plan, t, s)


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_system_forward_backward(pair: str) -> None:
    spec, plan, system = make(*PAIRS[pair])
    system.train()
    assert not system.teacher.training  # kept in eval mode
    out = system(torch.rand(2, 3, SIZE, SIZE))
    assert set(out) == {"teacher", "student", "assistant"}
    for name, (logits, feat) in out.items():
        assert logits.shape == (2, 10), name
        assert feat.shape == (2, plan.table(plan.global_role if name == "assistant" else name).head.num_features)
    sum(o[0].square().mean() + o[1].square().mean() for k, o in out.items() if k != "teacher").backward()

    a = system.assistant
    assert all(p.grad is not None for p in a.bridge.parameters())
    assert all(p.grad is None for p in system.teacher.parameters())
    if plan.local_role == "student":
        shared = [p for m in a.local.stage_modules(plan.split) for p in m.parameters()]
        assert shared and all(p.grad is not None for p in shared)
    # The assistant's own parameters are exactly the bridge's, as the plan counted.
    own = {id(p) for p in a.parameters()}
    assert own == {id(p) for p in a.bridge.parameters()}
    assert sum(p.numel() for p in a.parameters()) == plan.bridge.params
    # Borrowed stages are the very modules of the student and the teacher.
    models = {"teacher": system.teacher, "student": system.student}
    assert a.local.model is models[plan.local_role] and a.glob.model is models[plan.global_role]


def _stage_calls(plan, system, size: int = SIZE) -> Counter[str]:
    """How often each stage module of teacher and student runs in one forward of the system."""
    calls: Counter[str] = Counter()
    for role, model in (("teacher", system.teacher), ("student", system.student)):
        for stage in plan.table(role).stages:
            for path in stage.modules:
                model.get_submodule(path).register_forward_hook(
                    lambda *_, key=f"{role}:{path}": calls.update([key]))
    system(torch.rand(2, 3, size, size))
    return calls


def test_every_shared_stage_runs_once_per_step() -> None:
    _, plan, system = make({"timm": "deit_tiny_patch16_224"}, {"timm": "resnet18"})
    calls = _stage_calls(plan, system)
    student_calls = {k: v for k, v in calls.items() if k.startswith("student")}
    assert student_calls and set(student_calls.values()) == {1}  # stages 1-3 shared, not recomputed
    # The teacher's last stage runs twice: once for the teacher (no grad), once in the assistant.
    last = plan.table("teacher").stages[-1].modules
    assert all(calls[f"teacher:{p}"] == 2 for p in last)
    assert all(calls[f"teacher:{p}"] == 1 for s in plan.table("teacher").stages[:-1] for p in s.modules)


def test_teacher_is_renormalised_when_it_expects_other_statistics() -> None:
    # vit_tiny expects mean/std 0.5; resnet18 ImageNet statistics.
    _, plan, system = make(TINY_VIT, {"timm": "resnet18"})
    assert not system.same_norm
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        t_logits = system(x)["teacher"][0]
        direct = system.teacher(system.norm_teacher(x))
    torch.testing.assert_close(t_logits, direct)
    torch.testing.assert_close(system.norm_teacher(x), (x - 0.5) / 0.5)


def test_finetuned_teacher_copy_trains_and_the_teacher_does_not() -> None:
    _, plan, system = make({"timm": "deit_tiny_patch16_224"}, {"timm": "resnet18"},
                           assistant={"teacher_stages": "finetune"})
    out = system(torch.rand(2, 3, SIZE, SIZE))
    out["assistant"][0].square().mean().backward()
    copy = system.assistant.teacher_copy
    assert any(p.grad is not None for p in copy.parameters())
    assert all(p.grad is None for p in system.teacher.parameters())
    assert copy.blocks[0].attn.qkv.weight is not system.teacher.blocks[0].attn.qkv.weight


@pytest.mark.parametrize("pair", ["cnn->vit", "vit->cnn"])
def test_compiles_whole_without_graph_breaks(pair: str) -> None:
    _, _, system = make(*PAIRS[pair])
    system.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        eager = system(x)
    torch._dynamo.reset()
    compiled = torch.compile(system, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
    for name in eager:
        torch.testing.assert_close(out[name][0], eager[name][0], rtol=1e-4, atol=1e-4)


EMIT_CASES = {
    "cnn->vit": (PAIRS["cnn->vit"], {}),
    "vit->cnn": (PAIRS["vit->cnn"], {}),
    "cnn->staged": (PAIRS["cnn->staged"], {}),
    "cnn->vit depth, head": (PAIRS["cnn->vit"], {"assistant": {"bridge": {"prefix_tokens": "depth"}},
                                                 "distill": {"feature": {"pool": "head"}}}),
    "vit->cnn embed": (PAIRS["vit->cnn"], {"assistant": {"bridge": {"prefix_tokens": "embed"}}}),
    "vit->cnn finetune": (PAIRS["vit->cnn"], {"assistant": {"teacher_stages": "finetune"}}),
}


@pytest.mark.parametrize("case", list(EMIT_CASES), ids=list(EMIT_CASES))
def test_emitted_source_reproduces_the_assistant_in_a_fresh_process(case: str, tmp_path) -> None:
    pair, extra = EMIT_CASES[case]
    spec, plan, system = make(*pair, **extra)
    system.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    local_norm = system.norm_student if plan.local_role == "student" else system.norm_teacher
    with torch.no_grad():
        expected = system.assistant(local_norm(x))
        torch.testing.assert_close(expected, system(x)["assistant"][0])  # as the system computes it
        features = system(x)["assistant"][1].contiguous().clone()
    source = assistant_source(spec, plan)
    assert "import tasgen" not in source and "from tasgen" not in source
    assert plan.hash in source.splitlines()[0]
    run_emitted(tmp_path, source, system, {"x": local_norm(x), "expected": expected, "features": features}, (
        "    prefix = a.global_prefix(io['x']) if hasattr(a, 'global_prefix') else None\n"
        "    feature = a.global_head(a.local_features(io['x']), prefix)[1]\n"
        "torch.testing.assert_close(feature, io['features'], rtol=1e-5, atol=1e-5)\n"))


def run_emitted(tmp_path, source: str, system, io: dict, more: str = "") -> None:
    """Load the emitted `source` in a fresh process that imports only torch and timm, give it
    the system's weights, and check its assistant on io["x"] against io["expected"]
    (rtol = atol = 1e-5). `more` is further code run after that call (its lines indented by
    four spaces run under no_grad). The assistant's standalone state_dict (what `tasgen
    export --part assistant` writes) must load as is and give the same logits."""
    (tmp_path / "assistant.py").write_text(source)
    save_file({k: v.contiguous() for k, v in system.state_dict().items()}, tmp_path / "system.safetensors")
    standalone = {k: v.contiguous().clone() for k, v in system.assistant.standalone_state_dict().items()}
    save_file(standalone, tmp_path / "standalone.safetensors")
    save_file(io, tmp_path / "io.safetensors")
    code = (
        "import sys, torch\n"
        "from safetensors.torch import load_file\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from assistant import Assistant\n"
        "a = Assistant().eval()\n"
        "a.load_system_state_dict(load_file(sys.argv[1] + '/system.safetensors'))\n"
        "io = load_file(sys.argv[1] + '/io.safetensors')\n"
        "with torch.no_grad():\n"
        "    out = a(io['x'])\n"
        f"{more}"
        "b = Assistant().eval()\n"
        "b.load_state_dict(load_file(sys.argv[1] + '/standalone.safetensors'))  # strict\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(b(io['x']), out, rtol=0, atol=0)\n"
        "assert 'tasgen' not in sys.modules\n"
        "torch.testing.assert_close(out, io['expected'], rtol=1e-5, atol=1e-5)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


# ------------------------------------------------------------- the feature f
def test_default_feature_is_the_final_map_average_pooled_over_grid_tokens() -> None:
    # The paper's f: the final feature map, globally average pooled; a ViT's class token is left out.
    _, plan, system = make({"timm": "resnet18"}, TINY_VIT)
    system.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = system(x)
        s_map = system.student.forward_features(system.norm_student(x))
        t_map = system.teacher.forward_features(system.norm_teacher(x))
    prefix = plan.student.head.feature_prefix_tokens
    assert prefix == 1 and plan.student.head.feature_layout == "NLC"
    torch.testing.assert_close(out["student"][1], s_map[:, prefix:].mean(1))
    torch.testing.assert_close(out["teacher"][1], t_map.mean((2, 3)))
    assert out["assistant"][1].shape == (2, plan.feature_width("assistant"))


def test_head_pool_is_the_classifier_input() -> None:
    _, plan, system = make({"timm": "resnet18"}, TINY_VIT, distill={"feature": {"pool": "head"}})
    system.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = system(x)
        s_map = system.student.forward_features(system.norm_student(x))
    torch.testing.assert_close(out["student"][1], system.student.forward_head(s_map, pre_logits=True))
    assert plan.feature_width("student") == plan.student.head.num_features


@pytest.mark.parametrize("pool", ["avg", "head"])
def test_logits_and_feature_come_from_one_head_pass(pool: str) -> None:
    # With head dropout, two passes would give the logits and the feature different masks.
    vit = {**TINY_VIT, "kwargs": {**TINY_VIT["kwargs"], "drop_rate": 0.5}}
    _, _, system = make({"timm": "resnet18"}, vit, distill={"feature": {"pool": pool}})
    system.train()
    calls: Counter[str] = Counter()
    for role in ("teacher", "student"):
        model = getattr(system, role)
        original = model.forward_head

        def counted(*args, role=role, original=original, **kwargs):
            calls.update([role])
            return original(*args, **kwargs)

        model.forward_head = counted
    torch.manual_seed(0)
    out = system(torch.rand(4, 3, SIZE, SIZE))
    # Student once for itself, once as the assistant's global member; teacher once.
    assert calls == {"student": 2, "teacher": 1}
    if pool == "head":
        logits, feature = out["student"]
        torch.testing.assert_close(logits, system.student.get_classifier()(feature))


def test_one_head_pass_matches_forward_head_across_families() -> None:
    from tasgen.emit.feature import head_pass, one_pass_classifier

    for name in ("resnet18", "mobilenetv3_small_100", "convnext_atto", "deit_tiny_distilled_patch16_224",
                 "swin_tiny_patch4_window7_224", "resmlp_12_224", "volo_d1_224"):
        torch.manual_seed(0)
        model = create_model(Spec.model_validate({"name": "t", "teacher": {"timm": name},
                                                  "student": {"timm": name}}).teacher,
                             num_classes=10, image_size=SIZE).eval()
        with torch.no_grad():
            x = model.forward_features(torch.rand(1, 3, SIZE, SIZE))
            logits, feature = head_pass(model, x, one_pass_classifier(model, x))
            torch.testing.assert_close(logits, model.forward_head(x), msg=name)
            torch.testing.assert_close(feature, model.forward_head(x, pre_logits=True), msg=name)


# ------------------------------------------------------ the bridge into a ViT
def _bridge_tokens(system, x):
    """The tokens the bridge hands the global member's next stage."""
    seen = {}
    a = system.assistant
    original = a.bridge.forward

    def keep(*args, **kwargs):
        seen["out"] = original(*args, **kwargs)
        return seen["out"]

    a.bridge.forward = keep
    with torch.no_grad():
        system(x)
    return seen["out"]


@pytest.mark.parametrize("pair", ["cnn->vit", "vit->cnn", "cnn->registers-vit"])
def test_bridge_prefix_tokens_depth_are_the_global_members_own_at_that_depth(pair: str) -> None:
    _, plan, system = make(*PAIRS[pair], assistant={"bridge": {"prefix_tokens": "depth"}})
    system.eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    tokens = _bridge_tokens(system, x)
    glob = system.assistant.glob
    norm = system.norm_teacher if plan.global_role == "teacher" else system.norm_student
    with torch.no_grad():
        reference = glob.forward_to(norm(x), plan.global_start - 1)
    n = plan.bridge.out_prefix_tokens
    assert n >= 1
    torch.testing.assert_close(tokens[:, :n], reference[:, :n])
    # The stand-alone assistant (local-normalised input) finds the same tokens itself.
    local_norm = system.norm_student if plan.local_role == "student" else system.norm_teacher
    with torch.no_grad():
        torch.testing.assert_close(system.assistant(local_norm(x)), system(x)["assistant"][0])


def test_bridge_prefix_tokens_pooled_and_embed() -> None:
    x = torch.rand(2, 3, SIZE, SIZE)
    _, plan, pooled = make({"timm": "resnet18"}, TINY_VIT, assistant={"bridge": {"prefix_tokens": "pooled"}})
    tokens = _bridge_tokens(pooled.eval(), x)
    torch.testing.assert_close(tokens[:, 0], tokens[:, 1:].mean(1))
    _, _, embed = make({"timm": "resnet18"}, TINY_VIT, assistant={"bridge": {"prefix_tokens": "embed"}})
    tokens = _bridge_tokens(embed.eval(), x)
    vit = embed.student
    torch.testing.assert_close(tokens[:, 0], (vit.cls_token + vit.pos_embed[:, :1]).expand(2, -1, -1)[:, 0])


@pytest.mark.parametrize("design", ["depth", "pooled", "embed"])
def test_every_shared_stage_runs_once_per_step_with_each_bridge_design(design: str) -> None:
    _, plan, system = make({"timm": "resnet18"}, TINY_VIT, assistant={"bridge": {"prefix_tokens": design}})
    calls = _stage_calls(plan, system)
    teacher = plan.table("teacher").stages
    assert all(calls[f"teacher:{p}"] == 1 for s in teacher for p in s.modules)  # local stages shared
    student = plan.table("student").stages
    # The student's stages before the bridge run once (in its own pass); those after it twice.
    for s in student:
        want = 1 if s.index < plan.global_start else 2
        assert all(calls[f"student:{p}"] == want for p in s.modules), s.index


def test_plan_loss_pairs_are_what_the_trainer_computes() -> None:
    from tasgen.losses import TASObjective

    for method in ("kd", "tas"):
        spec, plan, _ = make({"timm": "resnet18"}, TINY_VIT, distill={"method": method})
        objective = TASObjective(plan, {r: plan.feature_width(r) for r in ("teacher", "student", "assistant")}, 10)
        assert plan.ce_weight == objective.ce_weight
        if plan.logits["temperature"] == "auto":  # tas's kd: chosen from the teacher when training starts
            assert (method, objective.logit_temperature_threshold) == ("tas", plan.logits["threshold"])
        else:
            assert plan.logits["temperature"] == objective.logit_temperature
        by_name = {p.name: p for p in objective.pairs}
        assert [p.name for p in plan.loss_pairs] == list(by_name)
        for p in plan.loss_pairs:
            assert p.logit_weight == by_name[p.name].logit_weight
            assert p.feature_weight == by_name[p.name].feature_weight
            assert plan.logits["loss"] == objective.logit_loss
    spec, plan, _ = make({"timm": "resnet18"}, TINY_VIT, distill={"method": "kd"})
    assert (plan.ce_weight, plan.logits["loss"], plan.logits["temperature"]) == (0.1, "kd", 4.0)
    assert plan.loss_pairs[0].logit_weight == 0.9


def test_default_prefix_tokens_are_pooled() -> None:
    # Chosen by measurement (docs/design.md): the best student top-1 in both pair directions.
    for pair in ("vit->cnn", "cnn->vit"):
        _, plan, _ = make(*PAIRS[pair])
        assert plan.bridge.prefix_source == "pooled"


@pytest.mark.parametrize("pair, design", [("vit->cnn", "pooled"), ("cnn->vit", "pooled"), ("vit->cnn", "depth"),
                                          ("cnn->vit", "depth")])
def test_evaluation_runs_only_the_members_it_measures(pair: str, design: str) -> None:
    # Eval asks for the student and the assistant: their outputs are those of the full forward,
    # while the frozen teacher's own pass runs only as far as the assistant reads it, headless.
    _, plan, system = make(*PAIRS[pair], assistant={"bridge": {"prefix_tokens": design}})
    system.eval()
    calls: Counter[str] = Counter()
    for stage in plan.table("teacher").stages:
        for path in stage.modules:
            system.teacher.get_submodule(path).register_forward_hook(
                lambda *_, key=stage.index: calls.update([key]))
    system.teacher.get_classifier().register_forward_hook(lambda *_: calls.update(["head"]))
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        full = system(x)
        full_calls = calls.copy()
        calls.clear()
        part = system(x, members=("student", "assistant"))
    assert set(part) == {"student", "assistant"}
    for name in part:
        for got, want in zip(part[name], full[name], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    # The teacher's own pass (one call of each stage and of its head in the full forward) now
    # stops after the last stage the assistant borrows or reads; the assistant's use is unchanged.
    reads = {plan.split} if plan.local_role == "teacher" else set()
    if plan.global_role == "teacher" and system.share_prefix:
        reads.add(system.assistant.prefix_depth)
    last_read = max(reads, default=0)
    stages = [s.index for s in plan.table("teacher").stages]
    paths = {s.index: len(s.modules) for s in plan.table("teacher").stages}
    for k in stages:
        assert calls[k] == full_calls[k] - paths[k] * (k > last_read), k
    assert calls["head"] == full_calls["head"] - 1
    # Only the student: the teacher does not run at all.
    calls.clear()
    with torch.no_grad():
        alone = system(x, members=("student",))
    assert set(alone) == {"student"} and not calls
    torch.testing.assert_close(alone["student"][0], full["student"][0], rtol=0, atol=0)


def test_ofa_evaluation_skips_the_teacher_and_the_exits() -> None:
    from tasgen.emit.ofa import OFASystem

    _, plan, system = make(*PAIRS["vit->cnn"], distill={"method": "ofa"})
    ofa = OFASystem(system).eval()
    calls: list[int] = []
    system.teacher.register_forward_hook(lambda *_: calls.append(1))
    for block in system.teacher.blocks:
        block.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        full, part = ofa(x), ofa(x, members=("student",))
    assert set(part) == {"student"} and any(k.startswith("exit") for k in full)
    torch.testing.assert_close(part["student"][0], full["student"][0], rtol=0, atol=0)
    assert len(calls) == len(system.teacher.blocks)  # the full forward's blocks only: none in the second


def test_bridge_params_are_the_planners_count_for_every_design() -> None:
    """The planner counts the bridge's parameters without torch; the built bridge has exactly that many.

    Every input/output layout, prefix-token design, resampling (identity, patch conv,
    interpolation), head choice and window (clipped to the grid or not).
    """
    from tasgen.arch.table import Part
    from tasgen.emit.bridge import Bridge
    from tasgen.emit.staged import StagedModel
    from tasgen.planner import bridge_geometry

    vit = Spec.model_validate({"name": "t", "teacher": TINY_VIT, "student": TINY_VIT}).student
    table = stage_table(vit, role="student", num_classes=10, image_size=SIZE)
    glob = StagedModel(create_model(vit, num_classes=10, image_size=SIZE, device="meta"), table)
    layouts = ("NCHW", "NHWC", "NLC")
    # (input reduction, output reduction, resample option): identity, patch conv, interpolation both ways.
    resizes = ((8, 8, "auto"), (4, 16, "auto"), (8, 16, "interpolate"), (16, 8, "auto"), (4, 12, "auto"))
    counted = 0
    for src_layout, dst_layout, source, (r_in, r_out, resample), heads, window in itertools.product(
            layouts, layouts, ("pooled", "depth", "embed"), resizes, ("auto", 4), (2, 7)):
        src = Part(modules=["a"], channels=24, reduction=r_in, layout=src_layout,
                   prefix_tokens=1 if src_layout == "NLC" else 0)
        dst = Part(modules=["b"], channels=64, reduction=r_out, layout=dst_layout,
                   prefix_tokens=1 if dst_layout == "NLC" else 0)
        spec = Spec.model_validate({"name": "t", "teacher": TINY_VIT, "student": TINY_VIT, "assistant": {"bridge": {
            "prefix_tokens": source, "resample": resample, "heads": heads, "window_size": window, "mlp_ratio": 3.0}}})
        geometry, why = bridge_geometry(src, dst, spec, SIZE)
        assert geometry is not None, why
        with torch.device("meta"):
            bridge = Bridge(geometry, SIZE, glob)
        design = f"{src_layout}->{dst_layout} {source} {r_in}->{r_out} {resample} heads={heads} window={window}"
        assert sum(p.numel() for p in bridge.parameters()) == geometry.params, design
        counted += 1
    assert counted == 3 * 3 * 3 * len(resizes) * 2 * 2


@pytest.mark.parametrize("pair", ["vit->cnn", "cnn->vit"])
def test_shared_grad_scales_only_the_assistants_gradient_into_the_students_stages(pair: str) -> None:
    """assistant.shared_grad: same outputs; the student's parameters get that share of the assistant's
    gradient; the bridge's gradient is unchanged; 0 stops it. Both directions: the student as the local
    member (its early stages are borrowed) and as the global one (its late stages and head)."""
    x = torch.rand(2, 3, SIZE, SIZE)

    def grads(scale: float):
        _, plan, system = make(*PAIRS[pair], assistant={"shared_grad": scale})
        system.train()
        out = system(x)
        logits, feat = out["assistant"]
        (logits.square().mean() + feat.square().mean()).backward()
        student = {n: p.grad.clone() for n, p in system.student.named_parameters() if p.grad is not None}
        bridge = {n: p.grad.clone() for n, p in system.assistant.bridge.named_parameters()}
        return plan, out, student, bridge

    plan, full_out, full_student, full_bridge = grads(1.0)
    assert full_student  # the assistant borrows student stages
    _, out, student, bridge = grads(0.25)
    for name in full_out:
        torch.testing.assert_close(out[name][0], full_out[name][0], rtol=0, atol=0)
    assert set(student) == set(full_student)
    for n, g in full_student.items():
        torch.testing.assert_close(student[n], 0.25 * g)
    for n, g in full_bridge.items():
        torch.testing.assert_close(bridge[n], g)
    _, _, stopped, bridge = grads(0.0)
    assert not any(g.abs().sum() > 0 for g in stopped.values())
    assert all(bridge[n].abs().sum() > 0 for n in full_bridge if full_bridge[n].abs().sum() > 0)


def _compiled_assistant_matches_eager(system) -> None:
    """Compile the training system whole (fullgraph: a graph break fails), check the assistant's
    logits against eager, and run backward through the compiled graph."""
    system.train()
    x = torch.rand(2, 3, SIZE, SIZE)
    eager = system(x)["assistant"][0]
    torch._dynamo.reset()
    compiled = torch.compile(system, backend="aot_eager", fullgraph=True)
    out = compiled(x)["assistant"][0]
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    out.sum().backward()


def test_shared_grad_compiles_whole_without_graph_breaks() -> None:
    """The student-global path runs through functional_call: it still compiles as one graph."""
    _, _, system = make(*PAIRS["cnn->vit"], assistant={"shared_grad": 0.5})
    _compiled_assistant_matches_eager(system)
    assert any(p.grad is not None for p in system.student.parameters())


@pytest.mark.parametrize("pair", ["vit->cnn", "hybrid->cnn"])
def test_recompute_gives_the_same_outputs_and_gradients_and_keeps_fewer_activations(pair: str) -> None:
    """assistant.recompute: the frozen teacher stages after the bridge keep only their inputs for
    backward and run again there. Outputs and every gradient are the values without it; fewer bytes
    are saved for backward. The hybrid's global stage is a CoAtNet stage with batch norm, run in
    eval mode: recomputing it changes no running statistic."""
    x = torch.rand(2, 3, SIZE, SIZE)

    def run(recompute: bool):
        _, plan, system = make(*PAIRS[pair], assistant={"recompute": recompute})
        system.train()
        saved: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved.append(t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = system(x)
        logits, feat = out["assistant"]
        (logits.square().mean() + feat.square().mean() + out["student"][0].square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in system.named_parameters() if p.grad is not None}
        stats = {n: b.clone() for n, b in system.teacher.named_buffers()}
        return plan, out, grads, sum(saved), stats

    plan, out, grads, saved, stats = run(False)
    assert plan.global_role == "teacher" and not plan.recompute
    rplan, rout, rgrads, rsaved, rstats = run(True)
    assert rplan.recompute and rplan.hash == plan.hash  # how memory is spent, not what is computed
    for name in out:
        for a, b in zip(rout[name], out[name], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert set(rgrads) == set(grads) and any("assistant.bridge" in n for n in grads)
    for n, g in grads.items():
        torch.testing.assert_close(rgrads[n], g, rtol=1e-6, atol=1e-7)
    for n, b in stats.items():
        torch.testing.assert_close(rstats[n], b, rtol=0, atol=0)
    assert rsaved < saved


def test_recompute_leaves_a_trained_global_member_alone_and_compiles_whole() -> None:
    """Where the global stages are the student's (trained, in train mode), recompute does not apply;
    where they are the frozen teacher's, the checkpointed system compiles as one graph."""
    _, _, system = make(*PAIRS["cnn->vit"], assistant={"recompute": True})
    assert not system.assistant.recompute
    _, _, system = make(*PAIRS["vit->cnn"], assistant={"recompute": True})
    assert system.assistant.recompute
    _compiled_assistant_matches_eager(system)
    assert all(p.grad is not None for p in system.assistant.bridge.parameters())
