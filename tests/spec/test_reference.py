"""docs/spec.md and the JSON Schema are generated from the schema."""

from __future__ import annotations

import json
from pathlib import Path

from tasgen.spec import Spec, json_schema, load_spec, reference_markdown
from tasgen.spec.reference import JSON_SCHEMA_DIALECT

DOCS = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def test_docs_spec_md_is_up_to_date() -> None:
    assert DOCS.read_text() == reference_markdown(), (
        "docs/spec.md is stale: regenerate it with `python -m tasgen.spec > docs/spec.md`"
    )


def test_reference_lists_every_key() -> None:
    text = reference_markdown()
    for key, field in Spec.model_fields.items():
        assert f"| `{key}` |" in text
        if field.description:
            assert field.description in text
    assert "# yaml-language-server: $schema=tasgen-spec.schema.json" in text


def test_examples_in_the_reference_load(tmp_path: Path) -> None:
    example = reference_markdown().split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    assert load_spec(path).spec.name == "demo"


def test_json_schema_header() -> None:
    schema = json_schema()
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert schema["title"] == "tasgen spec"
    assert set(schema["required"]) == {"teacher", "student"}  # name comes from the file name
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_a_model_used_in_several_places_lists_the_paths_of_its_parts_in_each() -> None:
    # BackboneSpec is used at teacher and at student: its stem and stages are used under both.
    text = reference_markdown()
    assert "Used at: `teacher.stem`, `student.stem`." in text
    assert "Used at: `teacher.stages`, `student.stages`." in text
