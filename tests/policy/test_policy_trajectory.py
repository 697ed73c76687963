"""Trajectories in both accepted forms, normalised to the rule model (contract §2 "Trajectory" and §5
"Rules"). Pure unit tests: no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals.policy import (
    AUTO_APPROVED,
    Proposal,
    TrajectoryError,
    compile_policy,
    normalize_trajectory,
    parse_action_type,
    policy_evaluate,
)

STEP_KEYS = {"kind", "tool", "args", "result", "role", "content"}
TAU_BENCH_RUNS = Path(__file__).parents[3] / "shared" / "eval" / "tau-bench-airline" / "gpt-4o-airline-trials-0-1.json"


def openai(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"format": "openai", "messages": list(messages)}


def call(call_id: str | None, name: str, arguments: Any = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_message(call_id: str | None, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def tool_call_step(tool: str, args: dict[str, Any] | None = None, result: Any = None) -> dict[str, Any]:
    return {"kind": "tool_call", "tool": tool, "args": args or {}, "result": result, "role": "assistant", "content": ""}


def message_step(role: str, content: str) -> dict[str, Any]:
    return {"kind": "message", "tool": "", "args": {}, "result": None, "role": role, "content": content}


def error_path(raw: Any) -> str:
    with pytest.raises(TrajectoryError) as caught:
        normalize_trajectory(raw)
    return caught.value.path


# --- native steps ---------------------------------------------------------------------------------


def test_native_tool_call_gets_all_six_keys_with_the_contract_defaults() -> None:
    # given
    raw = [{"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-1"}, "result": {"total": 80}}]

    # when
    [step] = normalize_trajectory(raw)

    # then: role assistant and empty content for a tool call
    assert step == tool_call_step("get_order", {"order_id": "A-1"}, {"total": 80})


def test_native_message_gets_all_six_keys_with_the_contract_defaults() -> None:
    [step] = normalize_trajectory([{"kind": "message", "role": "user", "content": "my order arrived broken"}])

    # tool "", args {}, result null for a message
    assert step == message_step("user", "my order arrived broken")


def test_native_tool_call_without_args_or_result() -> None:
    assert normalize_trajectory([{"kind": "tool_call", "tool": "list_orders"}]) == [tool_call_step("list_orders")]


def test_native_tool_call_role_is_always_assistant_and_content_empty() -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "role": "user", "content": "ignored"}])

    assert step["role"] == "assistant"
    assert step["content"] == ""


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool"])
def test_native_message_keeps_every_contract_role(role: str) -> None:
    [step] = normalize_trajectory([{"kind": "message", "role": role, "content": "x"}])

    assert step["role"] == role


def test_native_message_without_content_has_empty_content() -> None:
    [step] = normalize_trajectory([{"kind": "message", "role": "user"}])

    assert step["content"] == ""


def test_native_steps_keep_their_order() -> None:
    raw = [
        {"kind": "message", "role": "user", "content": "refund A-1 please"},
        {"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-1"}, "result": "{}"},
        {"kind": "message", "role": "assistant", "content": "done"},
    ]

    steps = normalize_trajectory(raw)

    assert [(s["kind"], s["tool"], s["role"]) for s in steps] == [
        ("message", "", "user"),
        ("tool_call", "get_order", "assistant"),
        ("message", "", "assistant"),
    ]


@pytest.mark.parametrize(
    ("given_result", "expected"),
    [
        ('{"total": 80, "items": [1, 2]}', {"total": 80, "items": [1, 2]}),
        ("[1, 2, 3]", [1, 2, 3]),
        ("42", 42),
        ("4.5", 4.5),
        ("true", True),
        ("null", None),
        ('"quoted"', "quoted"),
        (' \n{"a": 1}\n', {"a": 1}),
    ],
)
def test_json_string_results_are_parsed(given_result: str, expected: Any) -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": given_result}])

    assert step["result"] == expected
    assert type(step["result"]) is type(expected)


@pytest.mark.parametrize(
    "text",
    ["Order A-1 shipped", "", "{not json", "Error: not found", "NaN", "Infinity", "-Infinity", "[NaN]", "nan", "1 2"],
)
def test_results_that_are_not_json_stay_text(text: str) -> None:
    # when
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": text}])

    # then: kept as given, and NaN/Infinity text never becomes a float
    assert step["result"] == text


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], 3, 2.5, True, None])
def test_results_that_are_already_values_are_kept(value: Any) -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": value}])

    assert step["result"] == value


def test_deeply_nested_json_text_result_does_not_escape_as_an_error() -> None:
    # given a JSON text deeper than the parser's recursion limit (a client can send one)
    deep = "[" * 100_000 + "]" * 100_000

    # when
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": deep}])

    # then it is kept as text: a client's input never makes the gate fail
    assert step["result"] == deep


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES)
def test_any_json_text_result_becomes_the_value_it_encodes(value: Any) -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": json.dumps(value)}])

    assert step["result"] == value


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_any_text_result_is_either_its_json_value_or_kept(text: str) -> None:
    # when
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "result": text}])

    # then
    try:
        expected = json.loads(text, parse_constant=_refuse)
    except ValueError:
        expected = text
    assert step["result"] == expected


def test_native_args_given_as_json_text_are_parsed() -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "args": '{"order_id": "A-1"}'}])

    assert step["args"] == {"order_id": "A-1"}


def test_native_null_args_are_an_empty_map() -> None:
    [step] = normalize_trajectory([{"kind": "tool_call", "tool": "t", "args": None}])

    assert step["args"] == {}


def test_no_trajectory_is_an_empty_list() -> None:
    assert normalize_trajectory(None) == []
    assert normalize_trajectory([]) == []
    assert normalize_trajectory(openai()) == []


@settings(max_examples=100, deadline=None)
@given(
    raw=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"kind": st.just("tool_call"), "tool": st.text(min_size=1, max_size=10)},
                optional={"args": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3), "result": JSON_VALUES},
            ),
            st.fixed_dictionaries(
                {"kind": st.just("message")},
                optional={"role": st.sampled_from(["user", "assistant", "system", "tool"]), "content": st.text()},
            ),
        ),
        max_size=8,
    )
)
def test_every_native_step_has_exactly_the_six_keys(raw: list[dict[str, Any]]) -> None:
    steps = normalize_trajectory(raw)

    assert len(steps) == len(raw)
    for given_step, step in zip(raw, steps, strict=True):
        assert set(step) == STEP_KEYS
        assert step["kind"] == given_step["kind"]
        assert isinstance(step["tool"], str)
        assert isinstance(step["args"], dict)
        assert isinstance(step["content"], str)
        assert step["role"] in {"user", "assistant", "system", "tool"}


# --- OpenAI messages ------------------------------------------------------------------------------


def test_openai_conversation_is_normalised_in_order() -> None:
    # given a system prompt, a user turn, an assistant that speaks and calls two tools, their results
    raw = openai(
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Refund A-1"},
        {
            "role": "assistant",
            "content": "Let me look that up.",
            "tool_calls": [
                call("c1", "get_order", '{"order_id": "A-1"}'),
                call("c2", "get_customer", '{"customer_id": "C-9"}'),
            ],
        },
        tool_message("c1", '{"total": 80}'),
        tool_message("c2", "customer C-9, gold tier"),
        {"role": "assistant", "content": "Refunding now."},
    )

    # when
    steps = normalize_trajectory(raw)

    # then: content before the message's tool calls; tool messages make no step
    assert steps == [
        message_step("system", "You are a support agent."),
        message_step("user", "Refund A-1"),
        message_step("assistant", "Let me look that up."),
        tool_call_step("get_order", {"order_id": "A-1"}, {"total": 80}),
        tool_call_step("get_customer", {"customer_id": "C-9"}, "customer C-9, gold tier"),
        message_step("assistant", "Refunding now."),
    ]


@pytest.mark.parametrize("content", [None, ""])
def test_assistant_message_with_only_tool_calls_makes_no_message_step(content: str | None) -> None:
    raw = openai({"role": "assistant", "content": content, "tool_calls": [call("c1", "get_order")]})

    assert normalize_trajectory(raw) == [tool_call_step("get_order")]


@pytest.mark.parametrize("content", [None, ""])
def test_message_without_tool_calls_makes_a_step_even_when_empty(content: str | None) -> None:
    raw = openai({"role": "assistant", "content": content}, {"role": "user", "content": content, "tool_calls": []})

    assert normalize_trajectory(raw) == [message_step("assistant", ""), message_step("user", "")]


def test_system_role_is_kept() -> None:
    [step] = normalize_trajectory(openai({"role": "system", "content": "policy text"}))

    assert step == message_step("system", "policy text")


def test_tool_messages_make_no_step_of_their_own() -> None:
    raw = openai(
        {"role": "assistant", "tool_calls": [call("c1", "a")]},
        tool_message("c1", "ok"),
        tool_message("unknown", "stray"),
    )

    steps = normalize_trajectory(raw)

    assert [s["kind"] for s in steps] == ["tool_call"]
    assert all(s["role"] != "tool" for s in steps)


def test_results_are_paired_by_id_when_they_come_out_of_order() -> None:
    # given two calls whose results arrive in reverse order
    raw = openai(
        {"role": "assistant", "tool_calls": [call("c1", "first"), call("c2", "second")]},
        tool_message("c2", "result of second"),
        tool_message("c1", "result of first"),
    )

    # when
    steps = normalize_trajectory(raw)

    # then
    assert [(s["tool"], s["result"]) for s in steps] == [
        ("first", "result of first"),
        ("second", "result of second"),
    ]


def test_results_are_paired_by_position_when_ids_repeat() -> None:
    # given the same id on several calls (some providers number calls per turn)
    raw = openai(
        {
            "role": "assistant",
            "tool_calls": [call("call_0", "lookup", '{"n": 1}'), call("call_0", "lookup", '{"n": 2}')],
        },
        tool_message("call_0", '"one"'),
        tool_message("call_0", '"two"'),
        {"role": "assistant", "tool_calls": [call("call_0", "lookup", '{"n": 3}')]},
        tool_message("call_0", '"three"'),
    )

    # when
    steps = normalize_trajectory(raw)

    # then each result goes to the oldest call still waiting with that id
    assert [(s["args"]["n"], s["result"]) for s in steps] == [(1, "one"), (2, "two"), (3, "three")]


def test_a_repeated_id_does_not_steal_the_result_of_another_id() -> None:
    raw = openai(
        {"role": "assistant", "tool_calls": [call("x", "a"), call("y", "b"), call("x", "c")]},
        tool_message("y", "for b"),
        tool_message("x", "for a"),
        tool_message("x", "for c"),
    )

    steps = normalize_trajectory(raw)

    assert [(s["tool"], s["result"]) for s in steps] == [("a", "for a"), ("b", "for b"), ("c", "for c")]


def test_a_call_without_a_tool_message_has_a_null_result() -> None:
    raw = openai(
        {"role": "assistant", "tool_calls": [call("c1", "answered"), call("c2", "unanswered")]},
        tool_message("c1", "ok"),
    )

    steps = normalize_trajectory(raw)

    assert [s["result"] for s in steps] == ["ok", None]


def test_tool_results_are_parsed_like_native_ones() -> None:
    raw = openai(
        {"role": "assistant", "tool_calls": [call("a", "t"), call("b", "t"), call("c", "t")]},
        tool_message("a", '{"seats": 3}'),
        tool_message("b", "NaN"),
        tool_message("c", "Error: flight not found"),
    )

    assert [s["result"] for s in normalize_trajectory(raw)] == [{"seats": 3}, "NaN", "Error: flight not found"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"order_id": "A-1", "amount": 42.5}', {"order_id": "A-1", "amount": 42.5}),
        ({"order_id": "A-1"}, {"order_id": "A-1"}),
        ("{}", {}),
        ("", {}),
        (None, {}),
    ],
)
def test_tool_call_arguments_become_a_map(arguments: Any, expected: dict[str, Any]) -> None:
    [step] = normalize_trajectory(openai({"role": "assistant", "tool_calls": [call("c", "t", arguments)]}))

    assert step["args"] == expected


def test_openai_content_parts_become_text() -> None:
    raw = openai({"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]})

    assert normalize_trajectory(raw) == [message_step("user", "Hello there")]


def test_openai_steps_have_exactly_the_six_keys() -> None:
    raw = openai(
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "x", "tool_calls": [call("c", "t", '{"a": 1}')]},
        tool_message("c", "1"),
    )

    assert all(set(step) == STEP_KEYS for step in normalize_trajectory(raw))


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("a list of steps", "trajectory"),
        (42, "trajectory"),
        ({"messages": []}, "trajectory.format"),
        ({"format": "anthropic", "messages": []}, "trajectory.format"),
        ({"format": "openai"}, "trajectory.messages"),
        ({"format": "openai", "messages": {"role": "user"}}, "trajectory.messages"),
        ([{"kind": "message", "role": "user"}, "step"], "trajectory[1]"),
        ([{"kind": "thought"}], "trajectory[0].kind"),
        ([{"tool": "get_order"}], "trajectory[0].kind"),
        ([{"kind": "tool_call"}], "trajectory[0].tool"),
        ([{"kind": "tool_call", "tool": ""}], "trajectory[0].tool"),
        ([{"kind": "tool_call", "tool": 3}], "trajectory[0].tool"),
        ([{"kind": "tool_call", "tool": "t", "args": [1, 2]}], "trajectory[0].args"),
        ([{"kind": "tool_call", "tool": "t", "args": "not json"}], "trajectory[0].args"),
        ([{"kind": "message", "role": "robot", "content": "x"}], "trajectory[0].role"),
        (openai({"role": "user", "content": "x"}, "message"), "trajectory.messages[1]"),
        (openai({"role": "user", "content": "x"}, {"role": "robot", "content": "x"}), "trajectory.messages[1].role"),
        (openai({"content": "x"}), "trajectory.messages[0].role"),
        (openai({"role": "assistant", "tool_calls": {"id": "c"}}), "trajectory.messages[0].tool_calls"),
        (openai({"role": "assistant", "tool_calls": ["get_order"]}), "trajectory.messages[0].tool_calls[0]"),
        (openai({"role": "assistant", "tool_calls": [{"id": "c"}]}), "trajectory.messages[0].tool_calls[0]"),
        (
            openai({"role": "assistant", "tool_calls": [call("a", "ok"), call("b", "")]}),
            "trajectory.messages[0].tool_calls[1].function.name",
        ),
    ],
)
def test_malformed_trajectory_raises_with_the_path(raw: Any, path: str) -> None:
    assert error_path(raw) == path


def test_trajectory_error_is_a_value_error_with_path_and_message() -> None:
    with pytest.raises(TrajectoryError) as caught:
        normalize_trajectory([{"kind": "message", "role": "robot"}])

    error = caught.value
    assert isinstance(error, ValueError)
    assert error.path == "trajectory[0].role"
    assert error.message
    assert str(error) == f"{error.path}: {error.message}"


# --- real runs: tau-bench airline, gpt-4o -------------------------------------------------------


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _real_runs() -> list[dict[str, Any]]:
    return json.loads(TAU_BENCH_RUNS.read_text())


@pytest.fixture(scope="module")
def real_runs() -> list[dict[str, Any]]:
    runs = _real_runs()
    assert runs, "the tau-bench file holds no runs"
    return runs


def test_real_runs_normalise_with_the_structure_the_contract_describes(real_runs: list[dict[str, Any]]) -> None:
    for number, run in enumerate(real_runs):
        messages = run["traj"]
        # given what the messages themselves say
        calls = [c for m in messages if m["role"] != "tool" for c in (m.get("tool_calls") or [])]
        results_by_id: dict[str, list[tuple[str, Any]]] = {}
        for m in messages:
            if m["role"] == "tool":
                results_by_id.setdefault(m["tool_call_id"], []).append((m["name"], m["content"]))
        expected_messages = [
            (m["role"], m.get("content") or "")
            for m in messages
            if m["role"] != "tool" and (m.get("content") or not m.get("tool_calls"))
        ]

        # when
        steps = normalize_trajectory(openai(*messages))

        # then
        tool_steps = [s for s in steps if s["kind"] == "tool_call"]
        message_steps = [s for s in steps if s["kind"] == "message"]
        assert len(steps) == len(tool_steps) + len(message_steps), number
        assert all(set(step) == STEP_KEYS for step in steps), number
        assert len(tool_steps) == len(calls), number
        assert [s["tool"] for s in tool_steps] == [c["function"]["name"] for c in calls], number
        assert [s["args"] for s in tool_steps] == [json.loads(c["function"]["arguments"]) for c in calls], number
        assert [(s["role"], s["content"]) for s in message_steps] == expected_messages, number
        assert all(s["role"] == "assistant" and s["content"] == "" for s in tool_steps), number
        assert all(s["tool"] == "" and s["args"] == {} and s["result"] is None for s in message_steps), number
        seen: dict[str, int] = {}
        for c, step in zip(calls, tool_steps, strict=True):
            # ids repeat across turns in these runs: the k-th call with an id takes the k-th result with it
            k = seen[c["id"]] = seen.get(c["id"], -1) + 1
            answers = results_by_id.get(c["id"], [])
            if k < len(answers):
                name, content = answers[k]
                assert name == step["tool"], (number, c["id"], k)
                assert step["result"] == _json_or_text(content), (number, c["id"], k)
            else:
                assert step["result"] is None, (number, c["id"], k)


def test_real_runs_keep_the_message_order(real_runs: list[dict[str, Any]]) -> None:
    for number, run in enumerate(real_runs):
        messages = run["traj"]
        # given the order the contract implies: each message's text, then its calls
        expected: list[tuple[str, str]] = []
        for m in messages:
            if m["role"] == "tool":
                continue
            if m.get("content") or not m.get("tool_calls"):
                expected.append(("message", m["role"]))
            expected.extend(("tool_call", c["function"]["name"]) for c in m.get("tool_calls") or [])

        steps = normalize_trajectory(openai(*messages))

        assert [(s["kind"], s["role"] if s["kind"] == "message" else s["tool"]) for s in steps] == expected, number


def test_every_real_tool_call_that_was_answered_got_a_result(real_runs: list[dict[str, Any]]) -> None:
    for number, run in enumerate(real_runs):
        messages = run["traj"]
        answered = sum(1 for m in messages if m["role"] == "tool")

        steps = normalize_trajectory(openai(*messages))

        with_result = [s for s in steps if s["kind"] == "tool_call" and s["result"] is not None]
        calls = sum(1 for s in steps if s["kind"] == "tool_call")
        assert len(with_result) == min(answered, calls), number


def test_rules_can_read_every_field_of_every_real_step(real_runs: list[dict[str, Any]]) -> None:
    # given a rule that reads all six fields of every step: it passes only if the CEL context has them
    spec = parse_action_type(
        {
            "name": "probe",
            "params_schema": {"type": "object"},
            # this probe is about what rules can read; the loop check has its own tests
            "builtin_checks": False,
            "rules": [
                {
                    "name": "six_keys",
                    "require": "trajectory.all(s, has(s.kind) && has(s.tool) && has(s.args) && has(s.result)"
                    " && has(s.role) && has(s.content) && s.kind in ['tool_call', 'message'])",
                },
                {
                    "name": "calls_counted",
                    "require": "size(trajectory.filter(s, s.kind == 'tool_call')) == params.calls",
                },
            ],
        }
    )
    compiled = compile_policy(spec, version=1)
    for number, run in enumerate(real_runs):
        steps = normalize_trajectory(openai(*run["traj"]))
        calls = sum(len(m.get("tool_calls") or []) for m in run["traj"])
        proposal = Proposal(
            sample_key=f"run-{number}",
            action_type="probe",
            params={"calls": calls},
            confidence=None,
            context={},
            agent={"name": "gpt-4o"},
            trajectory=steps,
            now=datetime(2024, 5, 15, 20, 0, tzinfo=UTC),
        )

        # when
        decision = policy_evaluate(compiled, proposal, budget_seconds=30)

        # then
        assert decision.status == AUTO_APPROVED, (number, decision.findings)
        assert [f["outcome"] for f in decision.findings if f["rule"] in {"six_keys", "calls_counted"}] == [
            "pass",
            "pass",
        ]


def test_openai_developer_role_is_read_as_system() -> None:
    # given: the newer name OpenAI gives system instructions
    steps = normalize_trajectory(openai({"role": "developer", "content": "Follow the airline policy"}))

    # then: rules see one role for system instructions, whatever the API version called it
    assert steps == [message_step("system", "Follow the airline policy")]


def test_tool_result_sent_as_content_parts_is_joined_and_parsed() -> None:
    steps = normalize_trajectory(
        openai(
            {"role": "assistant", "content": None, "tool_calls": [call("c1", "get_order")]},
            tool_message("c1", [{"type": "text", "text": '{"total": '}, {"type": "text", "text": "80}"}]),
        )
    )

    assert steps == [tool_call_step("get_order", {}, {"total": 80})]
