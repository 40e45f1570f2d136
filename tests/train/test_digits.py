"""A real (small) learning problem: sklearn's digits, teacher fitted first, then TAS.

Measured on a 2-core CPU (16 px, batch 64): the teacher reaches ~96% after 3 epochs,
the distilled student ~90% after 3 (chance: 10%), in about 3 s.
"""

from __future__ import annotations

from tasgen.spec.load import load_spec
from tasgen.teacher_store import TeacherStore
from tasgen.train import evaluate, train

from .conftest import spec_dict, write_spec_file


def test_digits_teacher_fit_then_tas_learns(tmp_path):
    data = spec_dict(
        tmp_path,
        data={"dataset": "digits", "image_size": 16, "batch_size": 64},
        train={"epochs": 3, "teacher_epochs": 3, "log_interval": 10,
               "optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"warmup_epochs": 0}},
    )
    result = train(load_spec(write_spec_file(tmp_path, data)), quiet=True)
    assert len(TeacherStore().teachers()) == 1  # fitted, since the spec names no teacher weights
    scores = evaluate(result.run_dir)
    assert scores["teacher_top1"] > 70.0
    assert scores["student_top1"] > 60.0
    assert scores["images"] == 359
