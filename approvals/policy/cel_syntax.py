"""CEL's syntax as a tree, for reading a rule's structure (its cost) before it ever runs.

The CEL binding compiles and runs expressions but exposes no syntax tree, and no CEL parser is
installed; this is a recursive-descent parser of the grammar in the CEL language definition
(cel-spec ``doc/langdef.md``): operators and their precedence, member selection, indexing,
calls, list, map and message literals, every literal form and the macros (``has``, ``all``,
``exists``, ``exists_one``, ``map``, ``filter``). An expression is parsed here only after the
binding compiled it; anything this parser does not know is a ``CelSyntaxError`` (the rule is
refused rather than estimated blind).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
RESERVED = frozenset(
    {"as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package"}
    | {"namespace", "return", "var", "void", "while"}
)


class CelSyntaxError(ValueError):
    pass


# --- the tree -----------------------------------------------------------------------------------


class Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    kind: str  # int, uint, double, string, bytes, bool, null
    value: Any


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Has(Node):
    """``has(operand.field)``: whether the field is set."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function ``f(args)`` (target None) or a method ``target.f(args)``."""

    function: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # ! or -
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # || && == != < <= > >= in + - * / %
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLiteral(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Message(Node):
    type_name: str
    fields: tuple[tuple[str, Node], ...]


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    """``range.macro(var, predicate[, transform])``; ``predicate`` is map's transform when it
    has two arguments (then ``transform`` is None)."""

    macro: str
    range: Node
    var: str
    predicate: Node
    transform: Node | None = None


# --- tokens -------------------------------------------------------------------------------------

_STRING_BODY = r"""(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
_TOKEN = re.compile(
    r"(?P<space>\s+|//[^\n]*)"
    rf"|(?P<string>(?:[rR][bB]?|[bB][rR]?)?{_STRING_BODY})"
    r"|(?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.[0-9]+|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]+[eE][+-]?[0-9]+|[0-9]+[uU]?)"
    r"|(?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|(?P<op>\|\||&&|==|!=|<=|>=|\?\.|\[\?|[<>!+\-*/%?:.,\[\](){}])",
    re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, number, ident, op, end
    text: str
    at: int


def tokens(source: str) -> list[Token]:
    found: list[Token] = []
    at = 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise CelSyntaxError(f"unexpected {source[at]!r} at {at}")
        kind = match.lastgroup or ""
        if kind != "space":
            found.append(Token(kind, match.group(0), at))
        at = match.end()
    found.append(Token("end", "", len(source)))
    return found


def string_value(text: str) -> tuple[str, str | bytes]:
    """(kind, value) of a string or bytes literal's source text."""
    prefix = text[: len(text) - len(text.lstrip("rRbB"))].lower()
    body = text[len(prefix) :]
    quote = body[:3] if body[:3] in ("'''", '"""') else body[0]
    inner = body[len(quote) : -len(quote)]
    if "r" not in prefix:
        inner = re.sub(
            r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)",
            lambda m: _unescape(m.group(1)),
            inner,
            flags=re.DOTALL,
        )
    if "b" in prefix:
        return "bytes", inner.encode("utf-8", "surrogatepass")
    return "string", inner


def _unescape(code: str) -> str:
    if code[0] in "xuU":
        return chr(int(code[1:], 16))
    if code[0].isdigit():
        return chr(int(code, 8))
    return _ESCAPES.get(code, code)


# --- the parser ---------------------------------------------------------------------------------

_PRECEDENCE = {
    "||": 0,
    "&&": 1,
    **dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in"), 2),
    **dict.fromkeys(("+", "-"), 3),
    **dict.fromkeys(("*", "/", "%"), 4),
}
# The binding refuses 100 nested parentheses; deeper than this is refused here too, so that the
# recursion stays bounded.
MAX_DEPTH = 120


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokens(source)
        self.at = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.at]

    def peek(self, *texts: str) -> bool:
        token = self.current
        return token.kind in ("op", "ident") and token.text in texts

    def take(self, *texts: str) -> Token | None:
        if self.peek(*texts):
            token = self.current
            self.at += 1
            return token
        return None

    def expect(self, text: str) -> Token:
        token = self.take(text)
        if token is None:
            raise CelSyntaxError(f"expected {text!r} at {self.current.at}, found {self.current.text or 'the end'!r}")
        return token

    def parse(self) -> Node:
        node = self.expr()
        if self.current.kind != "end":
            raise CelSyntaxError(f"unexpected {self.current.text!r} at {self.current.at}")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CelSyntaxError(f"nested more than {MAX_DEPTH} deep")
        condition = self.binary(0)
        if self.take("?"):
            then = self.binary(0)
            self.expect(":")
            condition = Conditional(condition, then, self.expr())
        self.depth -= 1
        return condition

    def binary(self, lowest: int) -> Node:
        """Precedence climbing: one frame per operator, not one per precedence level."""
        node = self.unary()
        while (token := self.current).kind in ("op", "ident") and _PRECEDENCE.get(token.text, -1) >= lowest:
            self.at += 1
            node = Binary(token.text, node, self.binary(_PRECEDENCE[token.text] + 1))
        return node

    def unary(self) -> Node:
        if token := self.take("!", "-"):
            operand = self.unary()
            if token.text == "-" and isinstance(operand, Literal) and operand.kind in ("int", "double"):
                return Literal(operand.kind, -operand.value)
            return Unary(token.text, operand)
        return self.member(self.primary())

    def member(self, node: Node) -> Node:
        while True:
            if self.take(".", "?."):
                name = self.ident()
                node = self.method(node, name, self.arguments(")")) if self.take("(") else Select(node, name)
            elif self.take("[", "[?"):
                index = self.expr()
                self.expect("]")
                node = Index(node, index)
            else:
                return node

    def method(self, target: Node, name: str, args: tuple[Node, ...]) -> Node:
        if name in MACROS and args and isinstance(args[0], Ident):
            if len(args) == 2:
                return Comprehension(name, target, args[0].name, args[1])
            if len(args) == 3 and name == "map":
                return Comprehension(name, target, args[0].name, args[1], args[2])
        return Call(name, args, target)

    def ident(self) -> str:
        token = self.current
        if token.kind != "ident":
            raise CelSyntaxError(f"expected a name at {token.at}, found {token.text or 'the end'!r}")
        self.at += 1
        return token.text

    def arguments(self, close: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while not self.take(close):
            self.take("?")  # an optional entry: [?a] or {?k: v}
            items.append(self.expr())
            if not self.take(","):
                self.expect(close)
                break
        return tuple(items)

    def primary(self) -> Node:
        token = self.current
        if token.kind == "number":
            self.at += 1
            return _number(token.text)
        if token.kind == "string":
            self.at += 1
            kind, value = string_value(token.text)
            return Literal(kind, value)
        if self.take("("):
            node = self.expr()
            self.expect(")")
            return node
        if self.take("["):
            return ListLiteral(self.arguments("]"))
        if self.take("{"):
            return self.map_literal()
        leading_dot = self.take(".") is not None
        name = self.ident()
        if name in RESERVED:
            raise CelSyntaxError(f"{name!r} is reserved")
        if not leading_dot and name in ("true", "false"):
            return Literal("bool", name == "true")
        if not leading_dot and name == "null":
            return Literal("null", None)
        if self.take("("):
            args = self.arguments(")")
            if name == "has" and len(args) == 1 and isinstance(args[0], Select):
                return Has(args[0].operand, args[0].field)
            return Call(name, args)
        if self.peek("{") or (self.peek(".") and self._message_ahead()):
            return self.message(name)
        return Ident(name)

    def _message_ahead(self) -> bool:
        """``a.b.C{`` is a message literal; ``a.b`` a selection."""
        at = self.at
        while self.tokens[at].text == "." and self.tokens[at + 1].kind == "ident":
            at += 2
        return self.tokens[at].text == "{"

    def message(self, name: str) -> Node:
        while self.take("."):
            name += "." + self.ident()
        self.expect("{")
        fields: list[tuple[str, Node]] = []
        while not self.take("}"):
            self.take("?")
            field = self.ident()
            self.expect(":")
            fields.append((field, self.expr()))
            if not self.take(","):
                self.expect("}")
                break
        return Message(name, tuple(fields))

    def map_literal(self) -> Node:
        entries: list[tuple[Node, Node]] = []
        while not self.take("}"):
            self.take("?")
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.take(","):
                self.expect("}")
                break
        return MapLiteral(tuple(entries))


def _number(text: str) -> Literal:
    unsigned = text[-1] in "uU"
    digits = text[:-1] if unsigned else text
    if digits[:2] in ("0x", "0X"):
        return Literal("uint" if unsigned else "int", int(digits, 16))
    if unsigned:
        return Literal("uint", int(digits))
    if any(c in digits for c in ".eE"):
        return Literal("double", float(digits))
    return Literal("int", int(digits))


def cel_parse(source: str) -> Node:
    """The syntax tree of a CEL expression; CelSyntaxError when it is not CEL this parser knows."""
    try:
        return _Parser(source).parse()
    except RecursionError as exc:
        raise CelSyntaxError("nested too deep to read") from exc
