"""The training tests' tiny specs, for the end-to-end data tests."""

from tests.train.conftest import make_spec, teacher_weights  # noqa: F401
