"""tools/saved_activations.py, the memory breakdown docs/benchmarks.md quotes, attributes honestly."""

from __future__ import annotations

from pathlib import Path

from tests.tools import load_tool
from tests.train.conftest import spec_dict, write_spec_file


def _tool():
    return load_tool("saved_activations")


def test_the_assistant_adds_its_parts_and_leaves_the_students_share_alone(tmp_path: Path) -> None:
    from tasgen.spec import load_spec

    path = write_spec_file(tmp_path, spec_dict(tmp_path, data={"batch_size": 8}))
    tas = _tool().saved_by_part(load_spec(path))
    kd = _tool().saved_by_part(load_spec(path, ["distill.method=kd"]))
    # The tiny teacher's last stage (attention) is the assistant's global stage.
    assert set(tas) == {"student", "bridge", "global stage 3", "assistant head", "objective"}
    assert set(kd) <= {"student", "objective"}
    assert all(mib > 0 for mib in tas.values())
    # The same student on the same batch saves the same tensors with or without the assistant.
    assert tas["student"] == kd["student"]
