"""The launch form's core: JSON Schema -> fields -> widgets -> a checked input; signal payloads."""

from __future__ import annotations

import json
from typing import Any

import panel as pn
import pytest
from hypothesis import given, strategies as st

from dashboard.schema_form import (
    SCHEMAS_ENV,
    FieldKind,
    InputProblem,
    SchemaForm,
    check_input,
    fields_from_schema,
    parse_json_text,
    workflow_schemas,
)
from dashboard.views.launch import workflow_keys
from dashboard.views.signal_form import signal_payload

#: What ``z.toJSONSchema(typedInput, {io: "input"})`` prints for the suite's ``typed`` workflow.
TYPED = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "target": {"type": "string", "description": "Where to deploy"},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 20},
        "ratio": {"type": "number"},
        "dryRun": {"default": True, "type": "boolean"},
        "tier": {"type": "string", "enum": ["dev", "staging", "prod"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["target", "replicas", "ratio", "tier", "tags"],
}


def test_fields_follow_the_schema_basic_types() -> None:
    fields = {f.name: f for f in fields_from_schema(TYPED)}
    assert [f.name for f in fields_from_schema(TYPED)] == ["target", "replicas", "ratio", "dryRun", "tier", "tags"]
    assert fields["target"].kind is FieldKind.STRING and fields["target"].required
    assert fields["target"].description == "Where to deploy"
    assert fields["replicas"].kind is FieldKind.INTEGER and (fields["replicas"].minimum, fields["replicas"].maximum) == (1, 20)
    assert fields["ratio"].kind is FieldKind.NUMBER
    assert fields["dryRun"].kind is FieldKind.BOOLEAN and fields["dryRun"].has_default and not fields["dryRun"].required
    assert fields["tier"].kind is FieldKind.ENUM and fields["tier"].options == ("dev", "staging", "prod")
    assert fields["tags"].kind is FieldKind.JSON


def test_nullable_const_and_unions() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": ["string", "null"]},
        "mode": {"const": "fast"},
        "either": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "blob": {"type": "object"},
    }}
    fields = {f.name: f for f in fields_from_schema(schema)}
    assert fields["name"].kind is FieldKind.STRING and fields["name"].nullable
    assert fields["mode"].kind is FieldKind.ENUM and fields["mode"].options == ("fast",)
    assert fields["either"].kind is FieldKind.JSON
    assert fields["blob"].kind is FieldKind.JSON


@pytest.mark.parametrize("schema", [None, {}, {"type": "array"}, {"properties": "nope"}])
def test_no_properties_means_no_fields(schema: Any) -> None:
    assert fields_from_schema(schema) == []


def test_widgets_per_type() -> None:
    form = SchemaForm(schema=TYPED)
    kinds = {name: type(w).__name__ for name, w in form.widgets.items()}
    assert kinds == {"target": "TextInput", "replicas": "IntInput", "ratio": "FloatInput", "dryRun": "Checkbox",
                     "tier": "Select", "tags": "TextAreaInput"}
    assert form.widgets["target"].label == "target *" and form.widgets["dryRun"].label == "dryRun"
    assert form.widgets["dryRun"].value is True  # the schema's default
    assert form.widgets["replicas"].start == 1 and form.widgets["replicas"].end == 20
    assert list(form.widgets["tier"].options) == ["dev", "staging", "prod"]


def fill(form: SchemaForm, **values: Any) -> None:
    for name, value in values.items():
        form.widgets[name].value = value


def test_a_filled_form_gives_the_typed_input() -> None:
    form = SchemaForm(schema=TYPED)
    fill(form, target="web", replicas=3, ratio=0.5, dryRun=False, tier="prod", tags='["a", "b"]')
    assert form.collect() == {"target": "web", "replicas": 3, "ratio": 0.5, "dryRun": False, "tier": "prod",
                              "tags": ["a", "b"]}


def test_missing_and_wrong_values_are_all_named() -> None:
    form = SchemaForm(schema=TYPED)
    fill(form, replicas=3, tags="[1, 2")
    with pytest.raises(InputProblem) as caught:
        form.collect()
    problems = caught.value.problems
    assert "target: required" in problems and "ratio: required" in problems
    assert any(p.startswith("tags is not valid JSON") and "line 1" in p for p in problems)


def test_the_schema_checks_what_the_widgets_cannot() -> None:
    form = SchemaForm(schema=TYPED)
    fill(form, target="web", replicas=3, ratio=1.0, tier="dev", tags='["ok", 7]')
    with pytest.raises(InputProblem) as caught:
        form.collect()
    assert caught.value.problems == ["tags.1: 7 is not of type 'string'"]


def test_without_a_schema_the_input_is_a_json_object() -> None:
    form = SchemaForm(schema=None)
    assert form.fields == [] and form.collect() == {}
    form.raw.value = '{"anything": [1, 2]}'
    assert form.collect() == {"anything": [1, 2]}
    form.raw.value = '["not", "an", "object"]'
    with pytest.raises(InputProblem, match="must be a JSON object"):
        form.collect()
    form.raw.value = "{oops"
    with pytest.raises(InputProblem, match="not valid JSON"):
        form.collect()


def test_an_optional_enum_can_stay_unset() -> None:
    form = SchemaForm(schema={"type": "object", "properties": {"level": {"enum": ["low", "high"]}}})
    assert form.collect() == {}
    form.widgets["level"].value = "high"
    assert form.collect() == {"level": "high"}


def test_an_invalid_schema_is_reported_not_raised() -> None:
    with pytest.raises(InputProblem, match="schema is itself invalid"):
        check_input({"type": "object", "properties": {"x": {"type": 12}}}, {"x": 1})


def test_parse_json_text_says_where() -> None:
    assert parse_json_text('{"a": 1}') == {"a": 1}
    with pytest.raises(InputProblem, match=r"not valid JSON: Expecting ',' delimiter \(line 2, column 1\)"):
        parse_json_text('{"a": 1\n"b": 2}')
    with pytest.raises(InputProblem, match="is empty"):
        parse_json_text("   ")


def test_signal_payload_must_be_an_object() -> None:
    assert signal_payload('{"note": "go"}') == {"note": "go"}
    with pytest.raises(InputProblem, match="must be a JSON object"):
        signal_payload("[1]")
    with pytest.raises(InputProblem, match="not valid JSON"):
        signal_payload("{'note': 'single quotes'}")


@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
), max_size=5))
def test_any_json_object_round_trips_as_a_payload(payload: dict[str, Any]) -> None:
    assert signal_payload(json.dumps(payload)) == payload


def test_workflow_schemas_from_the_environment(tmp_path: Any) -> None:
    path = tmp_path / "schemas.json"
    path.write_text(json.dumps({"typed": TYPED, "broken": "not a schema"}))
    assert workflow_schemas({SCHEMAS_ENV: str(path)}) == {"typed": TYPED}
    assert workflow_schemas({}) == {}
    path.write_text("{nope")
    assert workflow_schemas({SCHEMAS_ENV: str(path) + ".missing"}) == {}


def test_workflow_keys_leave_system_workflows_out() -> None:
    rows = [{"key": "b"}, {"key": "a"}, {"key": "init", "system": True}, {"nokey": 1}, "junk"]
    assert workflow_keys(rows) == ["a", "b"]
    assert workflow_keys({"workflows": [{"key": "x"}]}) == ["x"]
    assert workflow_keys(None) == []


def test_form_renders() -> None:
    pn.panel(SchemaForm(schema=TYPED)).get_root()
