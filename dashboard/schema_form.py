# mypy: allow-untyped-calls
"""A workflow's input as a form: widgets from its JSON Schema, values checked against it.

The Smithers Gateway (0.32) launches a workflow with ``launchRun {workflow, input}`` but does
not publish the workflow's input schema: ``listWorkflows`` gives a key, a name and a
description only. An input that does not match the workflow's schema is not refused by
``launchRun`` either: the run fails at its first step, before it is recorded, so the run id
``launchRun`` answered never exists. Checking the input here, before anything is sent, is
therefore the only place a typo gets a useful message.

The schemas come from the operator: a JSON file mapping each workflow key to the JSON Schema
of its input (what zod's ``z.toJSONSchema(schema)`` prints for a ``createSmithers({input})``
schema), given by ``serve --workflow-schemas FILE`` or ``SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS``
(:attr:`dashboard.config.DashboardConfig.workflow_schemas`, :func:`workflow_schemas`). A workflow
without one gets a JSON text area for its whole input.

- :func:`fields_from_schema` (pure): the top-level properties as :class:`FieldSpec` s; the basic
  types (string, number, integer, boolean, enum) get a widget of their own, anything else
  (arrays, objects, unions) a JSON text area.
- :func:`parse_json_text` (pure): text to a JSON value or :class:`InputProblem` saying where
  the text is broken.
- :func:`check_input` (pure): the whole input against the schema (``jsonschema``), every
  problem named by its field.
- :class:`SchemaForm`: the widgets; :meth:`SchemaForm.collect` gives the input or raises
  :class:`InputProblem` (nothing is sent then).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import panel as pn
import param

from inspector.errors import SmithersDashboardError

from .config import SCHEMAS_ENV

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "SCHEMAS_ENV",
    "FieldKind",
    "FieldSpec",
    "InputProblem",
    "SchemaForm",
    "check_input",
    "fields_from_schema",
    "load_workflow_schemas",
    "parse_json_text",
    "workflow_schemas",
]

log = logging.getLogger(__name__)



class InputProblem(SmithersDashboardError):
    """An input (or a signal's payload) that is not what it must be; ``problems`` lists why."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class FieldKind(enum.StrEnum):
    """How a top-level property is edited."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    JSON = "json"


_SCALAR_KINDS = {"string": FieldKind.STRING, "number": FieldKind.NUMBER, "integer": FieldKind.INTEGER,
                 "boolean": FieldKind.BOOLEAN}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One top-level property of an input schema, as the form edits it."""

    name: str
    kind: FieldKind
    required: bool = False
    #: The schema's ``default``, when ``has_default``.
    default: Any = None
    has_default: bool = False
    #: The allowed values of an enum, in the schema's order.
    options: tuple[Any, ...] = ()
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    #: ``null`` is allowed too (``type: ["integer", "null"]``): an empty widget sends ``null``.
    nullable: bool = False
    #: The property's own schema (for the JSON text area's hint).
    schema: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} *" if self.required else self.name


def _types(prop: Mapping[str, Any]) -> list[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    return []


def _bound(prop: Mapping[str, Any], key: str) -> float | None:
    value = prop.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _field(name: str, prop: Mapping[str, Any], required: bool) -> FieldSpec:
    types = _types(prop)
    nullable = "null" in types
    concrete = [t for t in types if t != "null"]
    options = prop.get("enum")
    if "const" in prop and isinstance(prop["const"], str | int | float | bool):
        options = [prop["const"]]
    kind = FieldKind.JSON
    if isinstance(options, list) and options and all(isinstance(v, str | int | float | bool) or v is None for v in options):
        kind, nullable = FieldKind.ENUM, None in options
    elif len(concrete) == 1 and concrete[0] in _SCALAR_KINDS:
        kind = _SCALAR_KINDS[concrete[0]]
    return FieldSpec(
        name=name,
        kind=kind,
        required=required,
        default=prop.get("default"),
        has_default="default" in prop,
        options=tuple(options) if kind is FieldKind.ENUM and isinstance(options, list) else (),
        description=str(prop.get("description") or ""),
        minimum=_bound(prop, "minimum") if kind in (FieldKind.NUMBER, FieldKind.INTEGER) else None,
        maximum=_bound(prop, "maximum") if kind in (FieldKind.NUMBER, FieldKind.INTEGER) else None,
        nullable=nullable,
        schema=prop,
    )


def fields_from_schema(schema: Mapping[str, Any] | None) -> list[FieldSpec]:
    """The top-level properties of an object schema, in the schema's order ([] for anything else)."""
    if not isinstance(schema, dict):
        return []
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = {r for r in schema.get("required") or () if isinstance(r, str)}
    return [_field(str(name), prop if isinstance(prop, dict) else {}, name in required)
            for name, prop in properties.items()]


def parse_json_text(text: str, what: str = "the payload") -> Any:
    """``text`` as JSON, or :class:`InputProblem` naming the line and column where it breaks."""
    if not text.strip():
        raise InputProblem([f"{what} is empty: write JSON, e.g. {{}}"])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputProblem([f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]) from None


def _where(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "the input"


def check_input(schema: Mapping[str, Any] | None, value: Any) -> None:
    """Raise :class:`InputProblem` listing every way ``value`` breaks ``schema`` (no schema: any object)."""
    if not isinstance(schema, dict) or not schema:
        if not isinstance(value, dict):
            raise InputProblem(["the input must be a JSON object, e.g. {}"])
        return
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputProblem([f"the workflow's input schema is itself invalid: {exc.message}"]) from None
    errors = sorted(validator_class(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise InputProblem([f"{_where(e.absolute_path)}: {e.message}" for e in errors])


def load_workflow_schemas(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``{workflow key: JSON Schema}`` file at ``path`` (entries that are not objects are left out)."""
    raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise InputProblem([f"{path}: the workflow schemas file must be a JSON object of workflow key -> schema"])
    return {str(key): schema for key, schema in raw.items() if isinstance(schema, dict)}


_CACHE: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}


def workflow_schemas(env: Mapping[str, str] | None = None, *, path: str | None = None) -> dict[str, dict[str, Any]]:
    """The schemas in ``path`` (the server's :attr:`~dashboard.config.DashboardConfig.workflow_schemas`)
    or, without one, in the file named by :data:`SCHEMAS_ENV` of ``env`` (default: the process
    environment). Re-read when the file changes; {} without one or when it cannot be read (logged)."""
    if path is None:
        path = (env if env is not None else os.environ).get(SCHEMAS_ENV, "").strip()
    if not path:
        return {}
    try:
        mtime = os.stat(path).st_mtime
        cached = _CACHE.get(path)
        if cached is None or cached[0] != mtime:
            _CACHE[path] = cached = (mtime, load_workflow_schemas(path))
        return cached[1]
    except (OSError, ValueError, InputProblem) as exc:
        log.error("cannot read the workflow input schemas %s: %s", path, exc)
        return {}


# ------------------------------------------------------------------ the widgets


def _json_hint(spec: FieldSpec) -> str:
    kinds = _types(spec.schema)
    if "array" in kinds:
        return 'JSON array, e.g. ["a", "b"]'
    if "object" in kinds:
        return 'JSON object, e.g. {"key": "value"}'
    return "JSON value"


def _option_label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _widget(spec: FieldSpec) -> pn.widgets.Widget:
    common: dict[str, Any] = {"label": spec.label, "sizing_mode": "stretch_width"}
    if spec.description:
        common["description"] = spec.description
    default = spec.default if spec.has_default else None
    if spec.kind in (FieldKind.STRING, FieldKind.INTEGER, FieldKind.NUMBER):
        common["placeholder"] = spec.name
    if spec.kind is FieldKind.STRING:
        return pn.widgets.TextInput(value=default if isinstance(default, str) else "", **common)
    if spec.kind is FieldKind.INTEGER:
        int_bounds = {k: int(v) for k, v in (("start", spec.minimum), ("end", spec.maximum)) if v is not None}
        return pn.widgets.IntInput(value=default if isinstance(default, int) else None, **int_bounds, **common)
    if spec.kind is FieldKind.NUMBER:
        bounds = {k: v for k, v in (("start", spec.minimum), ("end", spec.maximum)) if v is not None}
        return pn.widgets.FloatInput(value=default if isinstance(default, int | float) else None, **bounds, **common)
    if spec.kind is FieldKind.BOOLEAN:
        common.pop("sizing_mode")
        return pn.widgets.Checkbox(value=bool(default), **common)
    if spec.kind is FieldKind.ENUM:
        options = {_option_label(v): v for v in spec.options}
        if not spec.required and not spec.has_default:
            options = {"(not set)": _UNSET, **options}
        value = default if spec.has_default and default in spec.options else next(iter(options.values()))
        return pn.widgets.Select(options=options, value=value, **common)
    text = json.dumps(default) if spec.has_default else ""
    return pn.widgets.TextAreaInput(value=text, placeholder=f"{spec.name}: {_json_hint(spec)}", height=70, **common)


class _Unset:
    def __repr__(self) -> str:
        return "<not set>"


_UNSET: Any = _Unset()


def _read(spec: FieldSpec, widget: pn.widgets.Widget) -> Any:
    """A widget's value as JSON, ``_UNSET`` to leave the property out; InputProblem if unreadable."""
    value = widget.value
    if spec.kind is FieldKind.STRING:
        if value == "":
            # An empty box is a field left out (a required one is then reported missing), not "".
            return None if spec.nullable and not spec.required and not spec.has_default else _UNSET
        return value
    if spec.kind in (FieldKind.INTEGER, FieldKind.NUMBER):
        if value is None:
            return None if spec.nullable else _UNSET
        if isinstance(value, float) and not math.isfinite(value):
            raise InputProblem([f"{spec.name}: not a finite number"])
        return value
    if spec.kind is FieldKind.BOOLEAN:
        return bool(value)
    if spec.kind is FieldKind.ENUM:
        return value
    text = str(value or "")
    if not text.strip():
        return _UNSET
    return parse_json_text(text, what=spec.name)


class SchemaForm(pn.viewable.Viewer):
    """Widgets for one workflow's input (see the module docstring)."""

    schema = param.Dict(default=None, allow_None=True, doc="""
        The workflow's input JSON Schema; ``None``: a JSON text area for the whole input.""")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.fields = fields_from_schema(self.schema)
        #: One widget per field, by property name (empty without a schema of properties).
        self.widgets: dict[str, pn.widgets.Widget] = {spec.name: _widget(spec) for spec in self.fields}
        self.raw = pn.widgets.TextAreaInput(
            label="Input (JSON object)", value="{}", height=140, sizing_mode="stretch_width",
            placeholder='{"key": "value"}',
        )

    def collect(self) -> dict[str, Any]:
        """The input the form describes, checked against the schema; :class:`InputProblem` if not."""
        if not self.fields:
            value = parse_json_text(self.raw.value or "", what="the input")
            check_input(self.schema, value)
            return value if isinstance(value, dict) else {}
        problems: list[str] = []
        out: dict[str, Any] = {}
        for spec in self.fields:
            try:
                value = _read(spec, self.widgets[spec.name])
            except InputProblem as exc:
                problems.extend(exc.problems)
                continue
            if value is _UNSET:
                if spec.required:
                    problems.append(f"{spec.name}: required")
                continue
            out[spec.name] = value
        if problems:
            raise InputProblem(problems)
        check_input(self.schema, out)
        return out

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.fields:
            return pn.Column(self.raw, sizing_mode="stretch_width", margin=0)
        return pn.Column(*self.widgets.values(), sizing_mode="stretch_width", margin=0)
