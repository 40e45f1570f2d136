"""tools/timm_families.py, the measurement docs/design.md quotes, runs and counts honestly."""

from __future__ import annotations

import json

from tests.tools import load_tool


def _tool():
    return load_tool("timm_families")


def test_representatives_are_the_first_name_of_each_timm_module() -> None:
    import timm

    reps = _tool().representatives()
    assert len(reps) == len(timm.list_modules())
    assert reps["levit"] == sorted(timm.list_models(module="levit"))[0]


def test_counts_a_graph_read_family_and_a_refused_one(tmp_path, capsys) -> None:
    out = tmp_path / "families.json"
    assert _tool().main(["--families", "levit", "crossvit", "--json", str(out)]) == 0
    rows = {r["family"]: r for r in json.loads(out.read_text())}
    assert rows["levit"]["ok"] and rows["levit"]["reason"] is None
    assert not rows["crossvit"]["ok"] and "one chain of stages" in rows["crossvit"]["reason"]
    assert "1 of 2 families plan both ways" in capsys.readouterr().out
