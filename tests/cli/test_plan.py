"""`tasgen plan` and `tasgen emit` on the example specs and on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen.plan import Plan
from tasgen.planner import local_student
from tasgen_cli.app import app

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "specs" / "study").glob("*.yaml")])  # specs/base/ holds fragments for `extends`
runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print the commands' tables and warnings at a width nothing here wraps at.

    The console is made once, at import, from the $COLUMNS of the process (a CI runner's 80 cuts
    rows and warnings into lines); a CliRunner's env= comes too late for it. The tests read whole rows.
    """
    from rich.console import Console

    import tasgen_cli._render

    monkeypatch.setattr(tasgen_cli._render, "console", Console(width=400))


def test_there_are_examples_of_every_pairing() -> None:
    names = {p.stem for p in SPECS}
    assert {"quickstart", "vit_s-to-resnet18", "convnext_t-to-deit_t", "mixer_b16-to-mobilenetv2",
            "convnext_t-to-resmlp_s12", "resnet50-to-resnet18", "vit_s-to-deit_t",
            "coatnet-to-staged-student"} <= names


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_example_spec_validates_and_plans(spec: Path) -> None:
    result = runner.invoke(app, ["validate", str(spec), "--no-data"])  # written for machines that have the data
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["plan", str(spec), "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = Plan.from_json(result.stdout)
    assert plan.name == spec.stem
    table = runner.invoke(app, ["plan", str(spec), "--all"])
    assert table.exit_code == 0 and "chosen" in table.stdout and "bridge" in table.stdout
    # A CNN student of a global teacher (vit_s-to-resnet18) is told why its plan has no InfoNCE terms.
    no_infonce = plan.method == "tas" and local_student(plan.local_role) and plan.feature["loss"] == "none"
    assert ("note: no InfoNCE terms" in table.stdout) == no_infonce


@pytest.mark.slow
def test_same_spec_same_hash_across_processes() -> None:
    spec = str(ROOT / "specs" / "quickstart.yaml")
    cmd = [sys.executable, "-m", "tasgen_cli", "plan", spec, "--format", "json", "--no-cache"]
    first, second = (subprocess.run(cmd, capture_output=True, text=True, check=True) for _ in range(2))
    assert Plan.from_json(first.stdout).hash == Plan.from_json(second.stdout).hash


@pytest.mark.slow
def test_a_cached_plan_imports_neither_torch_nor_timm(tmp_path) -> None:
    """Once both stage tables are cached, `tasgen plan` is a sub-second command: it must not
    import torch (about 3 s here), not even for an exception class."""
    code = (
        "import os, sys; os.environ['TASGEN_CACHE_DIR'] = sys.argv[1]\n"
        "from typer.testing import CliRunner\n"
        "from tasgen_cli.app import app\n"
        "result = CliRunner().invoke(app, ['plan', sys.argv[2]])\n"
        "print(result.exit_code, 'torch' in sys.modules, 'timm' in sys.modules)\n"
    )
    cmd = [sys.executable, "-c", code, str(tmp_path / "cache"), str(ROOT / "specs" / "deit_t-to-resnet18.yaml")]
    cold, cached = (subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split() for _ in range(2))
    assert cold == ["0", "True", "True"]
    assert cached == ["0", "False", "False"]


def test_graph_formats() -> None:
    spec = str(ROOT / "specs" / "vit_s-to-resnet18.yaml")
    dot = runner.invoke(app, ["plan", spec, "-f", "dot"])
    assert dot.exit_code == 0 and dot.stdout.startswith('digraph "vit_s-to-resnet18"')
    assert "a_bridge" in dot.stdout and "cluster_teacher" in dot.stdout
    mermaid = runner.invoke(app, ["plan", spec, "-f", "mermaid"])
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart LR")


def test_exact_counts_match_the_plan() -> None:
    spec = str(ROOT / "specs" / "quickstart.yaml")
    plan = Plan.from_json(runner.invoke(app, ["plan", spec, "-f", "json"]).stdout)
    from tasgen.emit.summary import part_costs, system_costs
    from tasgen.spec import load_spec

    loaded = load_spec(spec).spec
    costs = part_costs(loaded, plan)
    assert {name: params for name, (params, _) in costs.items()} == {p.name: p.params for p in plan.assistant}
    assert all(flops > 0 for name, (_, flops) in costs.items() if name != "head")
    # The parts' FLOPs add up to the assistant's when the system runs it.
    rows = system_costs(loaded, plan)
    assistant_rows = [r for r in rows if r.name.startswith("assistant")]
    assert sum(r.flops for r in assistant_rows) == sum(f for _, f in costs.values())
    assert [r.name.split()[0] for r in rows] == ["teacher", "student", "assistant:", "assistant:", "assistant:",
                                                 "system"]
    teacher, student, bridge, system = rows[0], rows[1], rows[3], rows[-1]
    assert bridge.params == bridge.trainable == plan.bridge.params
    # The system holds each parameter once: the assistant borrows the teacher's and the student's stages.
    assert system.params == teacher.params + student.params + bridge.params
    assert system.trainable == student.params + bridge.params and teacher.trainable == 0
    result = runner.invoke(app, ["plan", spec, "--exact"])
    assert result.exit_code == 0 and "GFLOPs" in result.stdout


def test_emit_writes_an_importable_file_and_a_summary(tmp_path: Path) -> None:
    spec = str(ROOT / "specs" / "quickstart.yaml")
    out = tmp_path / "assistant.py"
    result = runner.invoke(app, ["emit", spec, "-o", str(out)])
    assert result.exit_code == 0, result.output
    check = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import assistant; m = assistant.Assistant(); print(type(m).__name__)", str(tmp_path)],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "Assistant", check.stderr
    summary = runner.invoke(app, ["emit", spec, "--format", "summary"])
    assert summary.exit_code == 0 and "bridge (new)" in summary.stdout and "GFLOPs" in summary.stdout


def _located(result, text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert text in result.stderr, result.stderr


def _tasgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasgen_cli", *args], capture_output=True, text=True)


def test_model_tasgen_cannot_read_is_located(write_spec) -> None:
    path = write_spec(
        "name: bad\n"
        "teacher:\n"
        "  timm: vit_tiny_patch16_224\n"
        "  kwargs: {embed_dim: 100, num_heads: 3}\n"
        "student: {timm: resnet18}\n"
    )
    _located(_tasgen("plan", str(path)), f"{path}:3:9: teacher.timm: tasgen cannot read vit_tiny_patch16_224")


def test_model_that_is_not_one_chain_is_located_at_its_role(write_spec) -> None:
    # LeViT, once refused here, is read as a graph; CrossViT's two branches are not a chain.
    path = write_spec("name: bad\nteacher: {timm: resnet18}\nstudent: {timm: crossvit_tiny_240}\n"
                      "data: {image_size: 240}\n")
    _located(_tasgen("plan", str(path)), f"{path}:3:17: student.timm: tasgen cannot read crossvit_tiny_240: "
             "CrossVit runs several branches side by side")


def test_pair_without_valid_path_is_located(write_spec) -> None:
    path = write_spec(
        "name: bad\n"
        "teacher: {timm: resnet18}\n"
        "student: {timm: deit_tiny_patch16_224}\n"
        "assistant:\n"
        "  split: 4\n"
        "  global_start: 5\n"
        "data: {image_size: 224}\n"
    )
    result = _tasgen("plan", str(path))
    _located(result, f"{path}:6:17: assistant.global_start: global_start is 5 but the student")
    path.write_text(path.read_text().replace("global_start: 5", "global_start: 1"))
    assert _tasgen("plan", str(path)).returncode == 0


def test_no_valid_candidate_lists_them_all(write_spec) -> None:
    path = write_spec(
        "name: bad\n"
        "teacher:\n"
        "  stem: {channels: 16, stride: 4}\n"
        "  stages:\n"
        "    - {mixer: attention, channels: 32, depth: 1, stride: 2}\n"
        "    - {mixer: conv, channels: 64, depth: 1, stride: 2}\n"
        "student: {timm: resnet18}\n"
        "data: {image_size: 64}\n"
    )
    result = _tasgen("plan", str(path))
    _located(result, f"{path}:1:1: assistant: no valid assistant for spec:teacher -> resnet18: "
                     "student stage 1 -> teacher stage 1: global stage before a local one")


def _printed_losses(stdout: str) -> dict[str, list[str]]:
    """The rows of `tasgen plan`'s losses table, by pair name (the cells, stripped)."""
    section = stdout[stdout.index("losses"):]
    rows = [line.strip("│ ").split("│") for line in section.splitlines() if line.startswith("│")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


@pytest.mark.parametrize("overrides", [
    ["distill.method=none"], ["distill.method=kd"], ["distill.method=ofa"], ["distill.method=tas"],
    ["distill.method=kd", "distill.pairs.teacher_student.enabled=false"],
    ["distill.method=tas", "distill.feature.loss=none", "distill.pairs.teacher_assistant.logit_weight=0"],
], ids=["none", "kd", "ofa", "tas", "kd-no-pair", "tas-logits-only"])
def test_plan_prints_the_objective_the_trainer_computes(overrides: list[str], tmp_path: Path) -> None:
    import torch

    from tasgen.compiler import build_models, plan_spec
    from tasgen.losses import cross_entropy, kd_loss, ofa_loss
    from tasgen.spec import load_spec
    from tasgen.train.setup import assemble_student_setup

    spec_file = ROOT / "specs" / "quickstart.yaml"
    args = [a for o in overrides for a in ("--set", o)]
    result = runner.invoke(app, ["plan", str(spec_file), *args])
    assert result.exit_code == 0, result.output
    printed = _printed_losses(result.stdout)

    loaded = load_spec(spec_file, overrides)
    plan = plan_spec(loaded)
    torch.manual_seed(0)
    teacher, student = build_models(loaded.spec, plan, device="cpu")
    setup = assemble_student_setup(loaded.spec, plan, tmp_path, torch.device("cpu"), teacher, student)
    objective = setup.objective
    outputs = setup.system.eval()(torch.rand(4, 3, plan.image_size, plan.image_size))
    target = torch.tensor([0, 1, 2, 3])
    total, terms = objective(outputs, target)
    assert list(terms) == objective.term_names

    # CE: the weight printed is the weight the trainer applies.
    ce_weight = float(printed.pop("ce")[2].split()[0])
    student_logits = outputs["student"][0]
    torch.testing.assert_close(terms["ce"], ce_weight * cross_entropy(student_logits, target, plan.label_smoothing))
    # Every printed pair, and only those, is a term of the trainer's objective, with the printed weights.
    computed_pairs = {name.split(".")[0] for name in terms if name != "ce"}
    if plan.method == "ofa":
        computed_pairs = {"teacher_student"} if len(terms) > 1 else set()
    assert set(printed) == computed_pairs
    for name, (direction, feature, logit) in printed.items():
        target_role, learner = direction.split(" -> ")
        feature = "0" if feature == "-" else feature.split()[0]  # "1.0 (InfoNCE)", or "-" when off
        if logit == "-":
            assert f"{name}.logit" not in terms
            continue
        logit_weight, recipe = logit.split(" ", 1)
        loss, temperature = recipe.strip("()").split(", ")[:2]
        if temperature.startswith("T auto"):  # kd's auto: the printed rule is the objective's
            assert temperature == f"T auto: 4 if the teacher's confidence >= {objective.logit_temperature_threshold:g}"
            assert recipe.endswith(", else 1)")
            temperature = objective.logit_temperature  # T 4 until the trainer measures the teacher
        else:
            temperature = float(temperature.removeprefix("T "))
        assert (f"{name}.feature" in terms) == (float(feature) > 0)
        teacher_logits = outputs[target_role][0]
        pulled = [learner] if plan.method != "ofa" else [f"exit{i}" for i in range(1, len(plan.student.stages) + 1)]
        keys = [f"{name}.logit"] if plan.method != "ofa" else [f"ofa.exit{i}" for i in range(1, len(pulled) + 1)]
        if plan.method == "ofa":
            assert "exits 1-4 + final" in recipe and "ofa.final" in terms
        for role, key in zip(pulled, keys, strict=True):
            learner_logits = outputs[role][0]
            if loss == "kd":
                want = kd_loss(learner_logits, teacher_logits, temperature)
            else:
                want = ofa_loss(learner_logits, teacher_logits, target, float(plan.logits["eps"]), temperature)
            torch.testing.assert_close(terms[key], float(logit_weight) * want)
    torch.testing.assert_close(total, sum(terms.values()))


def test_no_cache_bypasses_a_stale_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("TASGEN_CACHE_DIR", str(tmp_path))
    spec = str(ROOT / "specs" / "quickstart.yaml")
    fresh = Plan.from_json(runner.invoke(app, ["plan", spec, "-f", "json"]).stdout)
    entries = sorted((tmp_path / "tables").glob("*.json"))
    assert len(entries) == 2  # the teacher's and the student's tables
    for entry in entries:  # a stale entry: still a valid table, with a wrong parameter count
        table = json.loads(entry.read_text())
        table["params"] = 1
        entry.write_text(json.dumps(table))
    cached = Plan.from_json(runner.invoke(app, ["plan", spec, "-f", "json"]).stdout)
    assert cached.teacher.params == cached.student.params == 1
    result = runner.invoke(app, ["plan", spec, "-f", "json", "--no-cache"])
    assert result.exit_code == 0, result.output
    reread = Plan.from_json(result.stdout)
    assert reread.teacher.params == fresh.teacher.params > 1
    assert reread.hash == fresh.hash


@pytest.mark.parametrize(("method", "pair", "params"), [
    ("fitnet", ["teacher -> student", "100.0 (hint MSE)", "-"], "teacher_stage 2, student_stage 2, weight 100.0"),
    ("crd", ["teacher -> student", "0.8 (CRD NCE)", "-"],
     "dim 128, negatives 16384, temperature 0.07, momentum 0.5, weight 0.8"),
    ("dkd", ["teacher -> student", "-", "1.0 (dkd, T 4.0)"], "alpha 1.0, beta 8.0, temperature 4.0, warmup_epochs 20"),
    ("dist", ["teacher -> student", "-", "1.0 (dist, T 4.0)"], "beta 2.0, gamma 2.0, temperature 4.0"),
])
def test_plan_prints_a_baselines_pair_and_its_parameters(method: str, pair: list[str], params: str) -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml"), "--set", f"distill.method={method}"])
    assert result.exit_code == 0, result.output
    printed = _printed_losses(result.stdout)
    assert printed["ce"][2] == "1.0 (smoothing 0.1)" and printed["teacher_student"] == pair
    assert f"{method} parameters: {params}" in result.stdout
    plan = Plan.from_json(runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml"), "--set",
                                              f"distill.method={method}", "-f", "json"]).stdout)
    assert plan.method == method and plan.params


@pytest.mark.parametrize(("sets", "cells"), [
    ([], ["1.0 (InfoNCE, same class ignore)",  # the defaults (docs/design.md)
          "1.0 (kd, T auto: 4 if the teacher's confidence >= 0.8, else 1)"]),
    (["distill.logits.auto_threshold=0.65"], ["1.0 (InfoNCE, same class ignore)",
                                             "1.0 (kd, T auto: 4 if the teacher's confidence >= 0.65, else 1)"]),
    (["distill.logits.loss=ofa", "distill.feature.same_class=negative"], ["1.0 (InfoNCE)", "1.0 (ofa, T 1.0, eps 1.0)"]),
    (["distill.feature.same_class=positive", "distill.logits.temperature=2"],
     ["1.0 (InfoNCE, same class positive)", "1.0 (kd, T 2.0)"]),
], ids=["defaults", "threshold", "paper", "positive-t2"])
def test_plan_prints_tas_feature_and_logit_settings(sets: list[str], cells: list[str]) -> None:
    args = ["plan", str(ROOT / "specs" / "quickstart.yaml"), *[a for s in sets for a in ("--set", s)]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = _printed_losses(result.stdout)
    assert [printed[p][1:] for p in ("teacher_student", "teacher_assistant", "assistant_student")] == [cells] * 3


def test_image_size_the_patch_does_not_divide_names_the_size_and_sizes_both_models_accept() -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml"), "--set", "data.image_size=30"])
    assert result.exit_code == 2
    assert "data.image_size: vit_tiny_patch16_224 cuts images into 16x16 patches and 30 px" in result.output
    assert "a multiple of 16: 16 or 32" in result.output  # resnet18 takes any size


def test_patch_14_and_patch_16_partners_are_offered_their_common_multiples(tmp_path: Path) -> None:
    # DINOv2's 518 px with a patch-16 student, in small: a patch-14 teacher at 70 px.
    spec = tmp_path / "patches.yaml"
    spec.write_text("name: patches\n"
                    "teacher: {timm: vit_tiny_patch16_224, kwargs: {patch_size: 14, depth: 4}}\n"
                    "student: {timm: vit_tiny_patch16_224, kwargs: {depth: 4}}\n"
                    "data: {dataset: digits, image_size: 70}\n")
    result = runner.invoke(app, ["plan", str(spec), "--no-cache"])
    assert result.exit_code == 2
    assert f"{spec}:4:" in result.output and "70 px is not a multiple of 16" in result.output
    assert "a multiple of 112: 112" in result.output


@pytest.mark.parametrize("teacher_stages", ["frozen", "finetune"])
def test_emit_summary_and_plan_say_the_same_word_for_each_part(teacher_stages: str) -> None:
    args = [str(ROOT / "specs" / "quickstart.yaml"), "--set", f"assistant.teacher_stages={teacher_stages}"]
    plan = Plan.from_json(runner.invoke(app, ["plan", *args, "--format", "json"]).stdout)
    summary = runner.invoke(app, ["emit", *args, "--format", "summary"], env={"COLUMNS": "200"})
    assert summary.exit_code == 0, summary.output
    words = {part.source: part.ownership for part in plan.assistant if part.name != "head"}
    assert words["teacher"] == teacher_stages and words["student"] == "shared"
    assert f"teacher stem + stages 1-{plan.split} ({words['teacher']})" in summary.stdout
    assert f"+ head ({words['student']})" in summary.stdout and "bridge (new)" in summary.stdout


def test_plan_states_what_its_score_means_without_all() -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml")], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "score: lower is better, unitless" in result.stdout


def test_a_bridge_larger_than_the_student_is_warned_about_with_the_numbers_and_the_options() -> None:
    big = runner.invoke(app, ["plan", str(ROOT / "specs" / "resnet50-to-resnet18.yaml")], env={"COLUMNS": "400"})
    assert big.exit_code == 0, big.output
    assert "warning: the bridge has 12.86M parameters, more than the student resnet18 (11.23M)" in big.stdout
    assert "assistant.bridge.mlp_ratio" in big.stdout
    as_json = runner.invoke(app, ["plan", str(ROOT / "specs" / "resnet50-to-resnet18.yaml"), "--format", "json"])
    assert Plan.from_json(as_json.stdout) and "warning: the bridge" in as_json.stderr  # stdout stays JSON
    small = runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml")])
    assert "warning" not in small.output


@pytest.mark.parametrize("method", ["ofa", "kd", "none", "fitnet", "crd", "dkd", "dist"])
def test_plan_of_another_method_shows_what_it_builds_not_the_tas_assistant(method: str) -> None:
    from tasgen.compiler import plan_spec
    from tasgen.emit.ofa import ExitBranch
    from tasgen.plan_views import exit_branches
    from tasgen.spec import load_spec

    spec = ROOT / "specs" / "quickstart.yaml"
    result = runner.invoke(app, ["plan", str(spec), "--set", f"distill.method={method}"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"method {method}: no assistant" in result.stdout
    assert "assistant" not in result.stdout.split("no assistant", 1)[1] and "bridge:" not in result.stdout
    assert ("exit branches" in result.stdout) == (method == "ofa")
    plan = plan_spec(load_spec(spec, [f"distill.method={method}"]))
    for view, stage in zip(exit_branches(plan), plan.student.stages, strict=False):  # counted as built
        branch = ExitBranch(stage.layout, stage.channels, plan.num_classes, stage.prefix_tokens)
        assert view.params == sum(p.numel() for p in branch.parameters())
    assert len(exit_branches(plan)) == (len(plan.student.stages) if method == "ofa" else 0)


def test_every_base_fragment_is_extended_by_an_example_spec() -> None:
    # README: specs/ are validated and planned by the tests; specs/base/ fragments through the specs extending them.
    import yaml

    extended = set()
    for spec in SPECS:
        base = yaml.safe_load(spec.read_text()).get("extends")
        if base:
            extended.add((spec.parent / base).resolve())
    fragments = {p.resolve() for p in (ROOT / "specs" / "base").glob("*.yaml")}
    assert fragments and fragments <= extended, sorted(str(p) for p in fragments - extended)
    assert set((ROOT / "specs").rglob("*.yaml")) == {*SPECS, *(ROOT / "specs" / "base").glob("*.yaml")}


def test_plan_warns_of_the_measured_failure_modes_and_names_the_option() -> None:
    """A CNN student of a global teacher (vit-to-cnn's shape), and a homogeneous pair, get no InfoNCE
    terms by default and the plan says why; set back to infonce, they are warned about with the option
    that removes them. The other direction gets neither."""
    from tasgen.compiler import plan_spec
    from tasgen.planner import feature_loss_note, plan_warnings
    from tasgen.spec import load_spec

    study = ROOT / "specs" / "study"

    def plan(spec: str, *sets: str):
        return plan_spec(load_spec(study / spec, list(sets)))

    def warnings(spec: str, *sets: str) -> list[str]:
        return plan_warnings(plan(spec, *sets))

    default = warnings("vit-to-cnn.yaml")
    assert not any("InfoNCE" in w for w in default)
    assert "local member" in (feature_loss_note(plan("vit-to-cnn.yaml")) or "")
    assert any("8x8 grid interpolated from the student's 2x2 map" in w for w in default)
    kept = warnings("vit-to-cnn.yaml", "distill.feature.loss=infonce")
    assert any("InfoNCE terms were measured to do harm" in w and "feature.loss: auto" in w for w in kept)
    assert feature_loss_note(plan("vit-to-cnn.yaml", "distill.feature.loss=infonce")) is None
    assert not any("interpolated" in w for w in warnings("vit-to-cnn.yaml", "assistant.split=2"))  # 4x4 into 8x8
    assert not any("frozen" in w for w in warnings("vit-to-cnn.yaml", "assistant.teacher_stages=finetune"))
    assert all(feature_loss_note(plan(s)) is None for s in ("cnn-to-mlp.yaml", "cnn-to-vit.yaml"))
    assert warnings("cnn-to-mlp.yaml") == [] and warnings("cnn-to-vit.yaml") == []
    # A homogeneous pair: the student's stages lead its assistant too, and the note names the pair's kind.
    for spec in ("cnn-to-cnn.yaml", "vit-to-vit.yaml"):
        note = feature_loss_note(plan(spec)) or ""
        assert "a homogeneous pair" in note and "at most 1.0 validation point" in note, spec
        assert plan(spec).feature["loss"] == "none"
        assert any("InfoNCE terms were measured to do harm" in w
                   for w in warnings(spec, "distill.feature.loss=infonce")), spec
