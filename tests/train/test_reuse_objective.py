"""A run is the same run when its objective is: the distill keys its method does not read,
or a temperature spelled `auto` against the number it resolves to, do not make it another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasgen.spec.load import load_spec
from tasgen.train.run_folder import RunFolder
from tests.train.conftest import spec_dict, write_spec_file

# The paper's objective, spelled out: what every run recorded before the defaults changed.
PAPER = {"feature": {"same_class": "negative"}, "logits": {"loss": "ofa", "eps": 1.0, "temperature": 1.0}}


def _spec(tmp_path: Path, method: str, distill: dict[str, Any] | None = None):
    data = spec_dict(tmp_path, distill={"method": method, **(distill or {})})
    return load_spec(write_spec_file(tmp_path, data, f"{method}.yaml")).spec


def _recorded(tmp_path: Path, method: str, distill: dict[str, Any]) -> RunFolder:
    """A run folder whose spec.yaml records ``method`` trained with ``distill`` (as a run writes it)."""
    folder = RunFolder(tmp_path / f"run-{method}")
    folder.path.mkdir()
    folder.spec_file.write_text(yaml.safe_dump(_spec(tmp_path, method, distill).model_dump(mode="json")))
    return folder


@pytest.mark.parametrize("method", ["none", "kd", "dkd", "dist", "fitnet", "crd"])
def test_methods_that_do_not_read_tas_losses_keep_their_runs(tmp_path: Path, method: str) -> None:
    folder = _recorded(tmp_path, method, PAPER)
    assert folder.spec_changes(_spec(tmp_path, method)) == []
    # ...while a key the method does read still makes another run.
    changed = {"none": {"ce": {"label_smoothing": 0.2}}, "kd": {"kd": {"temperature": 2.0}},
               "dkd": {"dkd": {"beta": 2.0}}, "dist": {"dist": {"beta": 1.0}},
               "fitnet": {"fitnet": {"weight": 10.0}}, "crd": {"crd": {"dim": 64}}}[method]
    keys = [c[0] for c in folder.spec_changes(_spec(tmp_path, method, changed))]
    assert keys and all(k.startswith("distill.") for k in keys)
    assert any(k.endswith(("label_smoothing", "temperature", "beta", "weight", "dim")) for k in keys)


def test_ofa_keeps_its_runs_because_auto_is_t1_for_ofa(tmp_path: Path) -> None:
    folder = _recorded(tmp_path, "ofa", PAPER)
    assert folder.spec_changes(_spec(tmp_path, "ofa")) == []
    changes = folder.spec_changes(_spec(tmp_path, "ofa", {"logits": {"temperature": 4.0}}))
    assert ("distill.logits.temperature", 1.0, 4.0) in changes


def test_tas_under_the_paper_objective_is_another_run(tmp_path: Path) -> None:
    folder = _recorded(tmp_path, "tas", PAPER)
    changes = folder.spec_changes(_spec(tmp_path, "tas"))
    assert ("distill.feature.same_class", "negative", "ignore") in changes
    assert ("distill.logits.loss", "ofa", "kd") in changes
    # the defaults spelled out are the same run as the defaults
    explicit = {"feature": {"same_class": "ignore"}, "logits": {"loss": "kd", "temperature": "auto",
                                                                "auto_threshold": 0.8}}
    (tmp_path / "b").mkdir()
    assert _recorded(tmp_path / "b", "tas", explicit).spec_changes(_spec(tmp_path, "tas")) == []
    # kd's auto is chosen from the teacher: a run recorded at T 4 (the old default) is another run
    (tmp_path / "c").mkdir()
    at_four = _recorded(tmp_path / "c", "tas", {"logits": {"temperature": 4.0}})
    assert at_four.spec_changes(_spec(tmp_path, "tas")) == [("distill.logits.temperature", 4.0, "auto")]


@pytest.mark.parametrize(("local_role", "same_as"), [("teacher", "infonce"), ("student", "none")])
def test_auto_feature_loss_is_compared_under_the_recorded_plans_roles(tmp_path: Path, local_role: str,
                                                                       same_as: str) -> None:
    """A run recorded with the value ``auto`` takes for its pair is the same run as auto; the other value is not."""
    auto = _spec(tmp_path, "tas", {"feature": {"loss": "auto"}})
    for loss in ("infonce", "none"):
        (tmp_path / loss).mkdir()
        folder = _recorded(tmp_path / loss, "tas", {"feature": {"loss": loss}})
        changes = folder.spec_changes(auto)  # no plan.json: auto's value is not known, so it is neither
        assert ("distill.feature.loss", loss, "auto") in changes
        folder.plan_file.write_text(json.dumps({"pair": "heterogeneous", "local_role": local_role}))
        changes = folder.spec_changes(auto)
        assert (changes == []) == (loss == same_as), (loss, changes)


def test_a_teacher_fit_is_compared_on_what_it_reads(tmp_path: Path) -> None:
    """A teacher fit trains CE alone: of distill it reads the label smoothing only (as the teacher store's key)."""
    folder = _recorded(tmp_path, "tas", PAPER)
    assert folder.spec_changes(_spec(tmp_path, "tas"), teacher_fit=True) == []
    assert folder.spec_changes(_spec(tmp_path, "kd"), teacher_fit=True) == []
    changed = folder.spec_changes(_spec(tmp_path, "tas", {"ce": {"label_smoothing": 0.0}}), teacher_fit=True)
    assert changed == [("distill.ce.label_smoothing", 0.1, 0.0)]
    data = spec_dict(tmp_path, distill={"method": "tas"}, train={"teacher_epochs": 3})
    other = load_spec(write_spec_file(tmp_path, data, "longer.yaml")).spec
    assert [c[0] for c in folder.spec_changes(other, teacher_fit=True)] == ["train.teacher_epochs"]


def _plan_json(folder: RunFolder, logits: dict[str, Any] | None) -> None:
    """Write the run's plan.json as the planner does, its logits as ``logits`` say (an older version's record)."""
    from tasgen.planner import plan_losses

    recorded = load_spec(folder.spec_file).spec
    plan = {**plan_losses(recorded.distill, ("heterogeneous", "teacher")).model_dump(mode="json"),
            "pair": "heterogeneous", "local_role": "teacher"}
    if logits is not None:
        plan["logits"] = logits
    folder.plan_file.write_text(json.dumps(plan))


def test_a_run_whose_default_now_resolves_otherwise_is_another_run(tmp_path: Path) -> None:
    """Its spec.yaml reads as today's spec, but its plan.json says kd's auto was T 4 then (chosen from the
    teacher now): the study must not reuse it as a run under today's rule; spelled at 4, it is the same run."""
    old = {"loss": "kd", "temperature": 4.0}
    folder = _recorded(tmp_path, "tas", {})
    _plan_json(folder, old)
    assert folder.spec_changes(_spec(tmp_path, "tas")) == [
        ("objective.logits.temperature", 4.0, "auto"), ("objective.logits.threshold", None, 0.8)]
    assert folder.spec_changes(_spec(tmp_path, "tas", {"logits": {"temperature": 4.0}})) == []
    # the plan today's version writes for the same spec: the same run
    _plan_json(folder, None)
    assert folder.spec_changes(_spec(tmp_path, "tas")) == []
    # a method that reads no logit loss keeps its run whatever the old plan said of the logits
    (tmp_path / "n").mkdir()
    alone = _recorded(tmp_path / "n", "none", {})
    _plan_json(alone, old)
    assert alone.spec_changes(_spec(tmp_path, "none")) == []
    # a plan.json that does not record the objective leaves the spec to decide
    alone.plan_file.write_text(json.dumps({"pair": "heterogeneous", "local_role": "teacher"}))
    assert alone.spec_changes(_spec(tmp_path, "none")) == []
