"""`tasgen plan --format svg|png`: the planner's graph drawn with networkx on matplotlib."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tasgen.compiler import plan_spec
from tasgen.plan_draw import draw_plan, plan_figure
from tasgen.spec import load_spec
from tasgen_cli.app import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _svg_text(path: Path) -> list[str]:
    root = ET.parse(path).getroot()  # raises on a malformed file
    assert root.tag.endswith("svg")
    return ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]


def test_svg_names_both_models_the_bridge_and_the_parts(tmp_path: Path) -> None:
    out = tmp_path / "plan.svg"
    result = runner.invoke(app, ["plan", str(ROOT / "specs" / "vit_s-to-resnet18.yaml"), "--format", "svg", "-o", str(out)])
    assert result.exit_code == 0, result.output
    texts = _svg_text(out)
    joined = "\n".join(texts)
    assert "teacher: vit_small_patch16_224" in joined and "student: resnet18" in joined
    assert any(t.startswith("bridge") for t in texts)
    assert {"shared", "frozen", "new", "not in the assistant"} <= set(texts)
    assert "score" not in joined  # scores only with --all


def test_all_adds_every_candidates_score(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "vit_s-to-resnet18.yaml"
    plan = plan_spec(load_spec(spec))
    out = tmp_path / "plan.svg"
    assert runner.invoke(app, ["plan", str(spec), "--format", "svg", "--all", "-o", str(out)]).exit_code == 0
    texts = _svg_text(out)
    valid = [c for c in plan.candidates if c.valid]
    chosen = next(c for c in valid if (c.split, c.global_start) == (plan.split, plan.global_start))
    others = [c for c in plan.candidates if c is not chosen]
    labels = [t for t in texts if t == "x" or t.replace(".", "", 1).isdigit()]
    assert len(labels) == len(others)  # one label per candidate bridge edge
    assert sorted(labels) == sorted(f"{c.score:.3f}" if c.valid else "x" for c in others)
    assert any(f"score {chosen.score:.3f}" in t for t in texts)


def test_png_is_a_png_of_plausible_size(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "quickstart.yaml"
    out = tmp_path / "sub" / "plan.png"
    result = runner.invoke(app, ["plan", str(spec), "--format", "png", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.width > 1000 and img.height > 500


def test_colours_follow_ownership() -> None:
    from matplotlib.colors import to_hex

    from tasgen.plan_draw import OWNERSHIP_COLOURS

    spec = ROOT / "specs" / "quickstart.yaml"
    loaded = load_spec(spec, ["assistant.teacher_stages=finetune"])
    plan = plan_spec(loaded)
    fig = plan_figure(plan)
    faces = {to_hex(c) for coll in fig.axes[0].collections for c in getattr(coll, "get_facecolor", lambda: [])()}
    owned = {p.ownership for p in plan.assistant if p.source != "new"}
    assert "finetune" in owned and {OWNERSHIP_COLOURS[o] for o in owned} <= faces


def test_bad_suffix_and_unwritable_target(tmp_path: Path) -> None:
    plan = plan_spec(load_spec(ROOT / "specs" / "quickstart.yaml"))
    with pytest.raises(ValueError, match="use one of svg, png, pdf"):
        draw_plan(plan, tmp_path / "plan.gif")
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["plan", str(ROOT / "specs" / "quickstart.yaml"), "--format", "svg",
                                 "-o", str(blocker / "plan.svg")])
    assert result.exit_code == 2 and "cannot write" in result.output
