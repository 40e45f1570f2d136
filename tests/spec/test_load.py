"""load_spec: merging, overrides, defaults and located errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tasgen.spec import Location, Problem, SpecError, load_spec

WriteSpec = Callable[..., Path]


def problems_of(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return [str(p) for p in info.value.problems]


def only_problem(path: Path, overrides: tuple[str, ...] = ()) -> str:
    problems = problems_of(path, overrides)
    assert len(problems) == 1, problems
    return problems[0]


# ------------------------------------------------------------------ success
def test_minimal_spec_loads(write_spec: WriteSpec, minimal_spec: str) -> None:
    loaded = load_spec(write_spec(minimal_spec))
    assert loaded.spec.name == "demo"
    assert loaded.spec.teacher.timm == "resnet18"
    assert [s.mixer for s in loaded.spec.student.stages] == ["conv", "attention"]
    assert loaded.path.is_absolute()
    assert loaded.raw["data"] == {"dataset": "digits", "image_size": 32, "batch_size": 32}


def test_resolved_is_json_with_defaults(write_spec: WriteSpec, minimal_spec: str) -> None:
    resolved = load_spec(write_spec(minimal_spec)).resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert resolved["train"]["optimizer"]["name"] == "sgd"
    assert resolved["distill"]["method"] == "tas"


def test_name_defaults_to_file_stem(write_spec: WriteSpec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec.replace("name: demo\n", ""), "my-run.yaml")
    assert load_spec(path).spec.name == "my-run"


def test_defaulted_name_that_is_invalid_says_so(write_spec: WriteSpec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec.replace("name: demo\n", ""), "my run.yaml")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:1:1: name: ")
    assert "add a valid `name:`" in problem


def test_pretrained_tag_is_accepted(write_spec: WriteSpec, minimal_spec: str) -> None:
    text = minimal_spec.replace("{timm: resnet18}", "{timm: vit_small_patch16_224.augreg_in21k}")
    assert load_spec(write_spec(text)).spec.teacher.timm == "vit_small_patch16_224.augreg_in21k"


def test_yaml_merge_keys_work(write_spec: WriteSpec, minimal_spec: str) -> None:
    text = (
        minimal_spec
        + "train:\n  optimizer: &opt {name: adamw, lr: 0.001}\n  schedule: {name: cosine}\n"
    )
    assert load_spec(write_spec(text)).spec.train.optimizer.name == "adamw"


# ------------------------------------------------------------------ extends
def test_extends_merges_mappings_and_replaces_lists(
    write_spec: WriteSpec, minimal_spec: str
) -> None:
    base = write_spec(
        minimal_spec + "train: {epochs: 7, optimizer: {name: adamw, lr: 0.01}}\n", "bases/base.yaml"
    )
    child = write_spec(
        "extends: bases/base.yaml\n"
        "train:\n"
        "  optimizer: {lr: 0.5}\n"
        "student:\n"
        "  stages: [{mixer: mlp, channels: 8, depth: 2}]\n",
        "child.yaml",
    )
    loaded = load_spec(child)
    spec = loaded.spec
    assert spec.name == "child"  # a base's name is not inherited
    assert spec.train.epochs == 7
    assert (spec.train.optimizer.name, spec.train.optimizer.lr) == ("adamw", 0.5)
    assert [s.mixer for s in spec.student.stages] == ["mlp"]
    assert spec.student.stem.channels == 16
    assert spec.extends == base.resolve()
    # Each value is located in the file that supplied it.
    assert loaded.locate(("train", "optimizer", "lr")) == Location(str(child), 3, 19)
    assert loaded.locate(("train", "epochs")) == Location(str(base), 9, 17)
    assert loaded.locate(("student", "backbone", "stem", "channels")).file == str(base)


def test_extends_is_recursive_and_errors_point_into_the_base(
    write_spec: WriteSpec, minimal_spec: str
) -> None:
    grand = write_spec(minimal_spec + "train:\n  epochs: 0\n", "grand.yaml")
    write_spec("extends: grand.yaml\nseed: 3\n", "base.yaml")
    child = write_spec("extends: base.yaml\n", "child.yaml")
    assert (
        only_problem(child)
        == f"{grand}:10:11: train.epochs: input should be greater than or equal to 1 (got 0)"
    )


def test_extends_cycle(write_spec: WriteSpec) -> None:
    a = write_spec("extends: b.yaml\n", "a.yaml")
    b = write_spec("extends: a.yaml\n", "b.yaml")
    assert only_problem(a) == f"{b}:1:10: extends: extends cycle: {a} -> {b} -> {a}"


def test_extends_self(write_spec: WriteSpec) -> None:
    a = write_spec("extends: a.yaml\n", "a.yaml")
    assert only_problem(a).startswith(f"{a}:1:10: extends: extends cycle")


def test_missing_extends_target(write_spec: WriteSpec, minimal_spec: str) -> None:
    child = write_spec(minimal_spec + "extends: nowhere/base.yaml\n")
    problem = only_problem(child)
    assert problem.startswith(f"{child}:9:10: extends: base spec not found: ")
    assert problem.endswith(str(child.parent / "nowhere" / "base.yaml"))


# ------------------------------------------------------------- checkpoints
def test_checkpoint_resolved_against_the_file_that_names_it(
    write_spec: WriteSpec, minimal_spec: str
) -> None:
    weights = write_spec("not really weights", "bases/ckpt/teacher.safetensors")
    text = minimal_spec.replace(
        "{timm: resnet18}", "{timm: resnet18, checkpoint: ckpt/teacher.safetensors}"
    )
    write_spec(text, "bases/base.yaml")
    child = write_spec("extends: bases/base.yaml\n", "child.yaml")
    assert load_spec(child).spec.teacher.checkpoint == weights.resolve()


def test_missing_checkpoint(write_spec: WriteSpec, minimal_spec: str) -> None:
    text = minimal_spec.replace("{timm: resnet18}", "\n  timm: resnet18\n  checkpoint: gone.pt")
    path = write_spec(text)
    assert (
        only_problem(path)
        == f"{path}:4:15: teacher.checkpoint: checkpoint file not found: {path.parent / 'gone.pt'}"
    )


def test_empty_checkpoint(write_spec: WriteSpec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec.replace("{timm: resnet18}", "{timm: resnet18, checkpoint: ''}"))
    assert "empty string" in only_problem(path)


# ---------------------------------------------------------------- overrides
def test_overrides_apply_in_order(write_spec: WriteSpec, minimal_spec: str) -> None:
    overrides = (
        "train.epochs=3",
        "train.epochs=4",
        "student.stages.1.channels=64",
        "teacher={timm: resnet34, kwargs: {drop_rate: 0.1}}",
        "data.root=",
        "name=renamed",
    )
    loaded = load_spec(write_spec(minimal_spec), overrides)
    spec = loaded.spec
    assert spec.train.epochs == 4
    assert spec.student.stages[1].channels == 64
    assert spec.teacher.timm == "resnet34" and spec.teacher.kwargs == {"drop_rate": 0.1}
    assert spec.data.root is None
    assert spec.name == "renamed"
    assert loaded.locate(("train", "epochs")) == Location("--set", 2, 14)


def test_override_checkpoint_is_relative_to_the_working_folder(
    write_spec: WriteSpec, minimal_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(minimal_spec, "specs/x.yaml")
    weights = write_spec("w", "weights.pt")
    monkeypatch.chdir(tmp_path)
    assert (
        load_spec(spec, ["teacher.checkpoint=weights.pt"]).spec.teacher.checkpoint
        == weights.resolve()
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "train.epochs",
            "--set:1:1: malformed override 'train.epochs': expected KEY=VALUE, e.g. train.epochs=5",
        ),
        ("train.epoch=3", "--set:1:1: train.epoch: unknown key 'epoch' (did you mean 'epochs'?)"),
        ("trian.epochs=3", "--set:1:1: trian.epochs: unknown key 'trian' (did you mean 'train'?)"),
        (
            "train.epochs.x=3",
            "--set:1:1: train.epochs.x: train.epochs is a single value; it has no key 'x'",
        ),
        (
            "student.stages.5.depth=1",
            "--set:1:1: student.stages.5.depth: no list item 5: student.stages has 2 items",
        ),
        (
            "student.stages.x=1",
            "--set:1:1: student.stages.x: student.stages is a list; use a 0-based index, not 'x'",
        ),
        (
            "extends=other.yaml",
            "--set:1:1: extends: extends cannot be overridden; edit the spec file",
        ),
        (
            "train.epochs=0",
            "--set:1:14: train.epochs: input should be greater than or equal to 1 (got 0)",
        ),
        (
            "train.epochs=[1",
            "--set:1:16: train.epochs: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ),
        (
            "train.epochs=!!python/object/apply:os.getcwd []",
            "--set:1:14: train.epochs: the tag '!!python/object/apply:os.getcwd' is not allowed in a spec (only plain YAML values are)",
        ),
    ],
)
def test_bad_override(
    write_spec: WriteSpec, minimal_spec: str, override: str, expected: str
) -> None:
    assert only_problem(write_spec(minimal_spec), (override,)) == expected


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "teacher: {timm: resnet18\n",
            ":2:1: invalid YAML: expected ',' or '}', but got '<stream end>'",
        ),
        (
            "- a\n- b\n",
            ":1:1: a spec must be a mapping of keys (name, teacher, student, ...), got a list",
        ),
        (
            "",
            ":1:1: a spec must be a mapping of keys (name, teacher, student, ...), got an empty file",
        ),
        (
            "# just a comment\n",
            ":1:1: a spec must be a mapping of keys (name, teacher, student, ...), got an empty file",
        ),
        ("seed: 1\nseed: 2\n", ":2:1: seed: duplicate key (first given at line 1)"),
        (
            "teacher: !!python/object/apply:os.system ['true']\n",
            ":1:10: teacher: the tag '!!python/object/apply:os.system' is not allowed in a spec (only plain YAML values are)",
        ),
    ],
)
def test_file_level_errors(write_spec: WriteSpec, text: str, expected: str) -> None:
    path = write_spec(text)
    problem = only_problem(path)
    assert problem.startswith(f"{path}{expected}")


def test_python_tags_are_never_executed(
    write_spec: WriteSpec, tmp_path: Path, minimal_spec: str
) -> None:
    marker = tmp_path / "pwned"
    path = write_spec(minimal_spec + f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "not allowed" in only_problem(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "data: {",
            "data: {epoch: 3, ",
            "8:8: data.epoch: unknown key 'epoch' (valid keys: dataset, name, root, train_split, eval_split, streaming, download, image_size, batch_size, eval_batch_size, num_workers, eval_fraction, val_fraction, split_seed, train_samples, num_samples, augment)",
        ),
        (
            "name: demo",
            "name: demo\ntrain: {epoch: 3}",
            "2:9: train.epoch: unknown key 'epoch' (did you mean 'epochs'?)",
        ),
        (
            "image_size: 32",
            "image_size: big",
            "8:37: data.image_size: input should be a valid integer (got 'big')",
        ),
        (
            "image_size: 32",
            "image_size: 4",
            "8:37: data.image_size: input should be greater than or equal to 8 (got 4)",
        ),
        (
            "mixer: conv, channels: 16",
            "mixer: cnv, channels: 16",
            "6:15: student.stages.0.mixer: input should be 'conv', 'attention' or 'mlp' (got 'cnv'; did you mean 'conv'?)",
        ),
        (
            "  stem: {kind: conv, channels: 16, stride: 2}\n",
            "",
            "3:1: student: missing required key 'stem'",
        ),
        ("name: demo\nteacher: {timm: resnet18}\n", "", "1:1: missing required key 'teacher'"),
        (
            "{timm: resnet18}",
            "{timm: resnet1B}",
            "2:17: teacher.timm: unknown timm model 'resnet1B' (close: resnet18, ",
        ),
        (
            "{timm: resnet18}",
            "resnet18",
            "2:10: teacher: expected a mapping: {timm: <model name>} or a backbone with 'stem' and 'stages' (got 'resnet18')",
        ),
        (
            "{timm: resnet18}",
            "{timm: resnet18, kwargs: {depth: {a: 1}}}",
            "2:43: teacher.kwargs.depth: expected int or float or bool or str or list[int] (got a mapping)",
        ),
        (
            "heads: 2}",
            "heads: 5}",
            "7:7: student.stages.1: channels (32) must be divisible by heads (5)",
        ),
    ],
)
def test_schema_errors_are_located(
    write_spec: WriteSpec, minimal_spec: str, old: str, new: str, expected: str
) -> None:
    assert old in minimal_spec
    path = write_spec(minimal_spec.replace(old, new, 1))
    assert only_problem(path).startswith(f"{path}:{expected}")


def test_all_problems_are_reported_at_once(write_spec: WriteSpec, minimal_spec: str) -> None:
    text = minimal_spec.replace("resnet18", "resnet1B").replace("image_size: 32", "image_size: 4")
    path = write_spec(text + "train: {epoch: 3}\n")
    problems = problems_of(path, ("seed=-1", "nope"))
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:2:17",
        f"{path}:8:37",
        f"{path}:9:9",
        "--set:1:6",
        "--set:2:1",
    ]


def test_missing_spec_file(tmp_path: Path) -> None:
    assert (
        only_problem(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}:1:1: spec file not found"
    )


# ------------------------------------------------------- later stages' errors
def test_locate_and_error_for_later_stages(write_spec: WriteSpec, minimal_spec: str) -> None:
    path = write_spec(minimal_spec)
    loaded = load_spec(path)
    assert loaded.locate(("teacher", "timm-model", "timm")) == Location(str(path), 2, 17)
    assert loaded.locate(("student", "backbone", "stages", 1, "heads")) == Location(
        str(path), 7, 68
    )
    # Defaults have no node of their own: the nearest parent stands in, then the file.
    assert loaded.locate(("data", "augment", "hflip")) == Location(str(path), 8, 7)
    assert loaded.locate(("train", "epochs")) == Location(str(path), 1, 1)
    err = loaded.error(("teacher", "timm-model", "timm"), "cannot read the model")
    assert isinstance(err, SpecError)
    assert str(err) == f"{path}:2:17: teacher.timm: cannot read the model"
    assert err.problems == [Problem(str(path), 2, 17, "teacher.timm", "cannot read the model")]


def test_timm_and_stages_together_are_explained(write_spec) -> None:
    path = write_spec(
        "name: x\n"
        "teacher: {timm: resnet18}\n"
        "student:\n"
        "  timm: resnet18\n"
        "  stem: {channels: 16}\n"
    )
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value.problems[0]) == (
        f"{path}:5:3: student.stem: 'stem' cannot go with 'timm': a model is either "
        "{timm: <model name>} or a backbone with 'stem' and 'stages'"
    )


def test_an_unknown_users_home_in_extends_is_a_located_error(tmp_path) -> None:
    # Path.expanduser raises on "~nosuchuser"; the loader reports the base file as not found instead.
    from tasgen.spec.load import SpecError, load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("extends: ~no-such-user-here/base.yaml\nname: x\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert "spec.yaml:1" in str(err.value) and "no-such-user-here" in str(err.value)


# ------------------------------------------------------------------ paths
def test_every_path_of_a_spec_file_is_relative_to_that_file(
    write_spec: WriteSpec, minimal_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs" / "local-data").mkdir(parents=True)
    (tmp_path / "specs" / "exported").mkdir()
    (tmp_path / "specs" / "exported" / "config.json").write_text('{"architecture": "resnet18"}')
    write_spec(
        minimal_spec.replace("{timm: resnet18}", "{timm: 'local-dir:exported'}", 1)
        + "train: {output_dir: ../results}\n", "specs/base.yaml",
    )
    spec_file = write_spec("extends: base.yaml\ndata: {dataset: hfds, name: local-data}\n", "specs/x.yaml")
    hub = write_spec("extends: base.yaml\ndata: {dataset: imagefolder, root: ~/images}\n", "specs/hub.yaml")
    for cwd in (tmp_path, tmp_path / "specs" / "local-data"):  # the same spec means the same, wherever run
        monkeypatch.chdir(cwd)
        spec = load_spec(spec_file).spec
        assert spec.train.output_dir == tmp_path / "results"
        assert spec.data.name == str(tmp_path / "specs" / "local-data")
        assert spec.teacher.timm == f"local-dir:{tmp_path / 'specs' / 'exported'}"
        assert load_spec(hub).spec.data.root == Path.home() / "images"
    monkeypatch.chdir(tmp_path)
    hfds = load_spec(spec_file, ["data.name=ORG/NAME"]).spec.data
    assert hfds.name == "ORG/NAME"  # no such folder: a Hub name, left as it is


def test_override_paths_are_relative_to_the_working_folder(
    write_spec: WriteSpec, minimal_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(minimal_spec, "specs/base.yaml")
    spec_file = write_spec("extends: base.yaml\ndata: {dataset: imagefolder, root: images}\n", "specs/x.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_spec(spec_file).spec.data.root == tmp_path / "specs" / "images"
    spec = load_spec(spec_file, ["data.root=pictures", "train.output_dir=out", "train.epochs=2"]).spec
    assert spec.data.root == tmp_path / "pictures" and spec.train.output_dir == tmp_path / "out"
    # A later override leaves a path resolved earlier alone.
    assert load_spec(spec_file, ["train.output_dir=out", "data={dataset: digits}"]).spec.train.output_dir == (
        tmp_path / "out")
    assert load_spec(spec_file, ["train.epochs=2"]).spec.train.output_dir == Path("runs")  # the default: as is
