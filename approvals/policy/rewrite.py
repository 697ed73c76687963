"""How rules are handed to the CEL binding: the same decisions, written so the binding runs them
cheaply. Two rewrites, applied when a policy is compiled; findings, messages and the admin show each
rule as written.

**Macros over the trajectory, by index.** The binding (common-expression-language 0.10.0, on the
`cel` crate 0.14.5) copies the value it binds to a comprehension's variable, so
``trajectory.exists(s, ...)`` over 20 steps with tool results of a few kilobytes takes milliseconds,
while reading ``trajectory[i]`` costs a microsecond whatever the step holds. So each macro over the
trajectory becomes the same macro over the steps' indices:

    trajectory.exists(s, s.tool == 'x')    ->  _steps.exists(_s0, trajectory[_s0].tool == 'x')
    trajectory.filter(s, P(s))             ->  _steps.filter(_s0, P(trajectory[_s0])).map(_s0, trajectory[_s0])
    trajectory.map(s, P(s), F(s))          ->  _steps.filter(_s0, P(...)).map(_s0, F(...))

where ``_steps`` is ``[0, 1, ..., len(trajectory) - 1]``, handed to CEL with the trajectory.

**The conversation, without the tool results.** A gate function that reads the conversation
(``last_user_message``, ``user_said``, ``confirmed_after``: approvals.policy.language) receives its
argument converted back to Python, the whole trajectory with every tool result. Given the bare
``trajectory``, it is handed ``_messages`` instead: the message steps with their kind, role and
content, all those functions read.

tests/policy/test_rewrite.py runs every rule of the example policies both ways on the real airline
proposals, and a table of shapes. An expression this module cannot rewrite with certainty (the
macro's variable bound again inside its body, a macro of another shape) is left as written: slower,
never different.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STEPS = "_steps"  # the variable holding the trajectory's indices
MESSAGES = "_messages"  # the variable holding the message steps, without tool calls
# The gate's functions whose first argument is the trajectory and which read only its messages.
_CONVERSATION_FUNCTIONS = ("last_user_message", "user_said", "confirmed_after")
_MACROS = ("all", "exists", "exists_one", "map", "filter")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?
        (?:'''(?:\\.|.)*?'''|\"\"\"(?:\\.|.)*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


class _CannotRewrite(Exception):
    pass


def _tokens(expression: str) -> list[_Token]:
    return [_Token(m.lastgroup or "other", m.group(0)) for m in _TOKEN.finditer(expression)]


def _code(tokens: list[_Token], start: int, step: int = 1) -> int:
    """The index of the next token from ``start`` (going by ``step``) that is not space, or -1/len."""
    index = start
    while 0 <= index < len(tokens) and tokens[index].kind == "space":
        index += step
    return index


def _closing(tokens: list[_Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(tokens)):
        text = tokens[index].text if tokens[index].kind == "other" else ""
        if text in "([{" and text:
            depth += 1
        elif text in ")]}" and text:
            depth -= 1
            if depth == 0:
                return index
    raise _CannotRewrite("unbalanced")


def _arguments(tokens: list[_Token], opening: int, closing: int) -> list[list[_Token]]:
    """The top-level comma-separated arguments between the brackets at ``opening`` and ``closing``."""
    arguments: list[list[_Token]] = [[]]
    depth = 0
    for token in tokens[opening + 1 : closing]:
        text = token.text if token.kind == "other" else ""
        if text and text in "([{":
            depth += 1
        elif text and text in ")]}":
            depth -= 1
        if depth == 0 and text == ",":
            arguments.append([])
        else:
            arguments[-1].append(token)
    return arguments


def _binds(tokens: list[_Token], name: str) -> bool:
    """Whether a macro inside ``tokens`` binds ``name`` (``.exists(name, ...)``)."""
    for index, token in enumerate(tokens):
        if token.kind == "name" and token.text in _MACROS:
            before = _code(tokens, index - 1, -1)
            after = _code(tokens, index + 1)
            variable = _code(tokens, after + 1)
            if (
                before >= 0
                and tokens[before].text == "."
                and after < len(tokens)
                and tokens[after].text == "("
                and variable < len(tokens)
                and tokens[variable].text == name
            ):
                return True
    return False


def _substitute(tokens: list[_Token], name: str, replacement: str) -> str:
    """``tokens`` as text with every free use of ``name`` (not a field: not after a dot) replaced."""
    out = []
    for index, token in enumerate(tokens):
        before = _code(tokens, index - 1, -1)
        is_field = before >= 0 and tokens[before].text == "."
        out.append(replacement if token.kind == "name" and token.text == name and not is_field else token.text)
    return "".join(out)


def _rewrite(tokens: list[_Token], depth: int) -> str:
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        macro = _macro_at(tokens, index)
        if macro is None:
            out.append(token.text)
            index += 1
            continue
        name, opening, closing = macro
        arguments = _arguments(tokens, opening, closing)
        variable = "".join(t.text for t in arguments[0]).strip()
        bodies = arguments[1:]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable) or not bodies or len(bodies) > 2:
            raise _CannotRewrite("shape")
        if len(bodies) == 2 and name != "map":
            raise _CannotRewrite("shape")
        if any(_binds(body, variable) or _binds(body, "trajectory") for body in bodies) or variable == "trajectory":
            raise _CannotRewrite("shadowed")
        index_name = f"_s{depth}"
        step = f"trajectory[{index_name}]"
        written = [_substitute(_tokens(_rewrite(body, depth + 1)), variable, step) for body in bodies]
        if name == "filter":
            out.append(f"{STEPS}.filter({index_name}, {written[0]}).map({index_name}, {step})")
        elif name == "map" and len(written) == 2:
            out.append(f"{STEPS}.filter({index_name}, {written[0]}).map({index_name}, {written[1]})")
        else:
            out.append(f"{STEPS}.{name}({index_name}, {written[0]})")
        index = closing + 1
    return "".join(out)


def _macro_at(tokens: list[_Token], index: int) -> tuple[str, int, int] | None:
    """(macro, its opening and closing bracket) when ``trajectory.<macro>(`` starts at ``index``."""
    token = tokens[index]
    if token.kind != "name" or token.text != "trajectory":
        return None
    before = _code(tokens, index - 1, -1)
    if before >= 0 and tokens[before].text == ".":
        return None  # a field called trajectory
    dot = _code(tokens, index + 1)
    if dot >= len(tokens) or tokens[dot].text != ".":
        return None
    macro = _code(tokens, dot + 1)
    if macro >= len(tokens) or tokens[macro].kind != "name" or tokens[macro].text not in _MACROS:
        return None
    opening = _code(tokens, macro + 1)
    if opening >= len(tokens) or tokens[opening].text != "(":
        return None
    return tokens[macro].text, opening, _closing(tokens, opening)


def _messages_only(tokens: list[_Token]) -> list[_Token]:
    """``tokens`` with the bare ``trajectory`` given to a conversation function as ``_messages``."""
    out = list(tokens)
    for index, token in enumerate(tokens):
        if token.kind != "name" or token.text not in _CONVERSATION_FUNCTIONS:
            continue
        before = _code(tokens, index - 1, -1)
        if before >= 0 and tokens[before].text == ".":
            continue  # a field, or a method call: not the gate's function
        opening = _code(tokens, index + 1)
        argument = _code(tokens, opening + 1)
        after = _code(tokens, argument + 1)
        if (
            after < len(tokens)
            and tokens[opening].text == "("
            and tokens[argument].kind == "name"
            and tokens[argument].text == "trajectory"
            and tokens[after].text in (",", ")")
        ):
            out[argument] = _Token("name", MESSAGES)
    return out


def conversation(trajectory: list[dict]) -> list[dict]:
    """``_messages``: the message steps of a normalised trajectory, with what the conversation
    functions read."""
    return [
        {"kind": "message", "role": step.get("role", ""), "content": step.get("content")}
        for step in trajectory
        if step.get("kind", "message") == "message"
    ]


def for_binding(expression: str) -> str:
    """``expression`` as the binding should run it: both rewrites of the module docstring, or
    ``expression`` itself when it has nothing to rewrite or cannot be rewritten with certainty."""
    if "trajectory" not in expression:
        return expression
    tokens = _tokens(expression)
    if "".join(t.text for t in tokens) != expression or any(
        t.kind == "name" and (t.text in (STEPS, MESSAGES) or re.fullmatch(r"_s[0-9]+", t.text)) for t in tokens
    ):
        return expression
    tokens = _messages_only(tokens)
    try:
        return _rewrite(tokens, 0)
    except _CannotRewrite:
        return "".join(t.text for t in tokens)
