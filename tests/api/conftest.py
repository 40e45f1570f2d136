"""The training tests' tiny specs and random teacher, shared with the API tests."""

from tests.train.conftest import make_spec, spec_dict, teacher_weights, write_spec_file  # noqa: F401
