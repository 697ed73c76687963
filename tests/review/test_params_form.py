"""The desk's edit form for params: fields typed by the schema, read back, and what changed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals.review.params_form import (
    ParamsFormError,
    params_changes,
    params_fields,
    params_from_form,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {
        "order_id": {"type": "string", "description": "the order"},
        "amount": {"type": "number", "minimum": 0},
        "count": {"type": "integer"},
        "notify": {"type": "boolean"},
        "channel": {"type": "string", "enum": ["email", "sms"]},
        "lines": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
    },
}


def form_of(schema: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    """What the form posts when the reviewer changes nothing."""
    return {field.input_name: field.value for field in params_fields(schema, params) if field.present}


def test_fields_follow_the_schema_then_the_params_it_does_not_name() -> None:
    fields = params_fields(SCHEMA, {"order_id": "A-1", "amount": 20, "extra": {"k": 1}})
    assert [(f.name, f.kind, f.present, f.required) for f in fields] == [
        ("order_id", "string", True, True),
        ("amount", "number", True, True),
        ("count", "integer", False, False),
        ("notify", "boolean", False, False),
        ("channel", "string", False, False),
        ("lines", "json", False, False),
        ("note", "string", False, False),
        ("extra", "json", True, False),
    ]
    by_name = {f.name: f for f in fields}
    assert by_name["amount"].value == "20"
    assert by_name["extra"].value == '{"k": 1}'
    assert by_name["channel"].choices == ("email", "sms")
    assert by_name["order_id"].description == "the order"
    assert by_name["order_id"].input_name == "param:order_id"


def test_an_unchanged_form_reads_back_as_the_params() -> None:
    params = {"order_id": "A-1", "amount": 20.5, "count": 3, "notify": True, "lines": ["a"], "extra": None}
    assert params_from_form(SCHEMA, params, form_of(SCHEMA, params)) == params
    assert params_changes(params, params_from_form(SCHEMA, params, form_of(SCHEMA, params))) == []


def test_an_edit_is_read_as_each_field_s_type_and_the_changes_named() -> None:
    params = {"order_id": "A-1", "amount": 150, "notify": False}
    form = {**form_of(SCHEMA, params), "param:amount": "100", "param:count": "2", "param:notify": "true"}
    edited = params_from_form(SCHEMA, params, form)
    assert edited == {"order_id": "A-1", "amount": 100, "count": 2, "notify": True}
    changes = params_changes(params, edited)
    assert [(c.name, c.before, c.after, c.added) for c in changes] == [
        ("amount", 150, 100, False),
        ("notify", False, True, False),
        ("count", None, 2, True),
    ]


def test_an_emptied_optional_field_removes_the_param() -> None:
    params = {"order_id": "A-1", "amount": 1, "count": 3}
    edited = params_from_form(SCHEMA, params, {**form_of(SCHEMA, params), "param:count": ""})
    assert edited == {"order_id": "A-1", "amount": 1}
    assert [(c.name, c.removed) for c in params_changes(params, edited)] == [("count", True)]


def test_fields_that_do_not_read_are_all_named() -> None:
    params = {"order_id": "A-1", "amount": 1}
    form = {**form_of(SCHEMA, params), "param:amount": "ten", "param:count": "2.5", "param:lines": "[1,"}
    with pytest.raises(ParamsFormError) as refused:
        params_from_form(SCHEMA, params, form)
    assert [error.split(":")[0] for error in refused.value.errors] == ["amount", "count", "lines"]
    with pytest.raises(ParamsFormError, match="amount: is required"):
        params_from_form(SCHEMA, params, {**form_of(SCHEMA, params), "param:amount": ""})
    with pytest.raises(ParamsFormError, match="amount: must be a number"):
        params_from_form(SCHEMA, params, {**form_of(SCHEMA, params), "param:amount": "NaN"})


def test_numbers_equal_as_json_are_no_change_and_booleans_are_not_numbers() -> None:
    assert params_changes({"a": 20}, {"a": 20.0}) == []
    assert [c.name for c in params_changes({"a": 1}, {"a": True})] == ["a"]
    assert [c.name for c in params_changes({"a": {"b": [1, 0]}}, {"a": {"b": [1, False]}})] == ["a"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=6))
def test_any_params_survive_an_untouched_form(params: dict[str, Any]) -> None:
    schema = {"type": "object", "properties": {"amount": {"type": "number"}, "order_id": {"type": "string"}}}
    typed = {**params}
    for name, kind in (("amount", (int, float)), ("order_id", str)):
        if name in typed and (isinstance(typed[name], bool) or not isinstance(typed[name], kind)):
            del typed[name]  # a value of another type is the schema's to refuse, not the form's to keep
    assert params_changes(typed, params_from_form(schema, typed, form_of(schema, typed))) == []


def test_the_form_starts_from_the_params_under_approval_and_compares_with_the_proposal() -> None:
    proposed = {"order_id": "A-1", "amount": 150}
    under_approval = {"order_id": "A-1", "amount": 100}
    fields = {f.name: f for f in params_fields(SCHEMA, proposed, current=under_approval)}
    assert (fields["amount"].value, fields["amount"].original) == ("100", "150")
    assert params_from_form(SCHEMA, proposed, {}, current=under_approval) == under_approval
    typed = {f.name: f for f in params_fields(SCHEMA, proposed, form={"param:amount": "ten"})}
    assert (typed["amount"].value, typed["amount"].original) == ("ten", "150")
