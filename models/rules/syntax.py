"""The rule language: a tokenizer and a recursive-descent parser, nothing evaluated here.

A rule file holds one rule a line; ``#`` starts a comment, blank lines are skipped::

    big_risky_terminal: amount > 5000 and TERMINAL_ID_RISK_7DAY_WINDOW > 0.2 -> review

Grammar (lowest precedence first)::

    rule       := NAME ":" expr "->" ACTION
    expr       := conjunct ("or" conjunct)*
    conjunct   := negation ("and" negation)*
    negation   := "not" negation | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
                | sum "in" "(" literal ("," literal)* ")"
    sum        := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | NAME | "true" | "false" | "(" expr ")"

The text is never handed to Python's ``eval``: the parser builds the small tree below and
``models/rules/compiled.py`` turns it into closures. Every error carries the line and
column (1-based) where it was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from features.card_numbers import contains_card_number

RuleAction = Literal["review", "decline"]
ACTIONS: tuple[str, ...] = ("approve", "review", "decline")
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})


class RuleSyntaxError(ValueError):
    """A rule file that cannot be loaded, with where: ``source:line:column: message``."""

    def __init__(self, message: str, line: int, column: int, source: str = "rules") -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.reason = message
        self.line = line
        self.column = column
        self.source = source


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUMBER, STRING, NAME, OP, END
    text: str
    line: int
    column: int


# Longest operators first, so "<=" is not read as "<" then "=".
_TOKEN = re.compile(
    r"""(?P<space>[ \t]+)
      | (?P<NUMBER>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<STRING>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<OP>->|<=|>=|==|!=|[<>():,+\-*/])
    """,
    # ASCII: ``\d`` would take other scripts' digits, which no rule means as a number.
    re.VERBOSE | re.ASCII,
)


def tokenize(text: str, line: int, source: str = "rules") -> list[Token]:
    """The tokens of one line (without its comment), ending with an END token."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise RuleSyntaxError(
                f"unexpected character {text[position]!r}", line, position + 1, source
            )
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), line, position + 1))
        position = match.end()
    tokens.append(Token("END", "", line, len(text) + 1))
    return tokens


# -- the tree -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Text:
    value: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Boolean:
    value: bool
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: Node
    right: Node
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Membership:
    subject: Node
    choices: tuple[Number | Text, ...]
    line: int
    column: int


Node = Number | Text | Boolean | Name | Unary | Binary | Membership


@dataclass(frozen=True, slots=True)
class ParsedRule:
    name: str
    condition: Node
    action: RuleAction
    text: str  # the condition as written
    line: int


_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})


class _Parser:
    def __init__(self, tokens: list[Token], source: str) -> None:
        self._tokens = tokens
        self._at = 0
        self._source = source

    def _peek(self) -> Token:
        return self._tokens[self._at]

    def _next(self) -> Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _error(self, message: str, token: Token | None = None) -> RuleSyntaxError:
        token = token or self._peek()
        return RuleSyntaxError(message, token.line, token.column, self._source)

    def _is(self, kind: str, text: str | None = None) -> bool:
        token = self._peek()
        return token.kind == kind and (text is None or token.text == text)

    def _expect(self, kind: str, text: str, what: str) -> Token:
        if not self._is(kind, text):
            raise self._error(f"expected {what}, found {_shown(self._peek())}")
        return self._next()

    def rule(self, line_text: str) -> ParsedRule:
        name = self._next()
        if name.kind != "NAME" or name.text in KEYWORDS:
            raise self._error(f"expected a rule name, found {_shown(name)}", name)
        self._expect("OP", ":", "':' after the rule name")
        start = self._peek()
        condition = self.expr()
        arrow = self._expect("OP", "->", "'->' and an action")
        action = self._next()
        if action.kind != "NAME" or action.text not in ACTIONS:
            raise self._error(
                f"expected an action (review or decline), found {_shown(action)}", action
            )
        if action.text == "approve":
            raise self._error(
                "a rule can only raise an action (review, decline); approve with the "
                "allowed_customers or allowed_terminals list",
                action,
            )
        if not self._is("END"):
            raise self._error(f"unexpected {_shown(self._peek())} after the action")
        text = line_text[start.column - 1 : arrow.column - 1].strip()
        return ParsedRule(name.text, condition, action.text, text, name.line)  # type: ignore[arg-type]

    def expr(self) -> Node:
        left = self.conjunct()
        while self._is("NAME", "or"):
            op = self._next()
            left = Binary("or", left, self.conjunct(), op.line, op.column)
        return left

    def conjunct(self) -> Node:
        left = self.negation()
        while self._is("NAME", "and"):
            op = self._next()
            left = Binary("and", left, self.negation(), op.line, op.column)
        return left

    def negation(self) -> Node:
        if self._is("NAME", "not"):
            op = self._next()
            return Unary("not", self.negation(), op.line, op.column)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        token = self._peek()
        if token.kind == "OP" and token.text in _COMPARISONS:
            self._next()
            right = self.sum()
            if self._peek().kind == "OP" and self._peek().text in _COMPARISONS:
                raise self._error("comparisons cannot be chained: join them with 'and'")
            return Binary(token.text, left, right, token.line, token.column)
        if self._is("NAME", "in"):
            self._next()
            self._expect("OP", "(", "'(' and a list of values after 'in'")
            choices = [self._literal()]
            while self._is("OP", ","):
                self._next()
                choices.append(self._literal())
            self._expect("OP", ")", "')' closing the list")
            return Membership(left, tuple(choices), token.line, token.column)
        return left

    def _literal(self) -> Number | Text:
        negative = self._is("OP", "-")
        if negative:
            self._next()
        atom = self.atom()
        if isinstance(atom, Number):
            return Number(-atom.value, atom.line, atom.column) if negative else atom
        if isinstance(atom, Text) and not negative:
            return atom
        raise RuleSyntaxError(
            "a list after 'in' holds numbers or strings only", atom.line, atom.column, self._source
        )

    def sum(self) -> Node:
        left = self.term()
        while self._peek().kind == "OP" and self._peek().text in ("+", "-"):
            op = self._next()
            left = Binary(op.text, left, self.term(), op.line, op.column)
        return left

    def term(self) -> Node:
        left = self.unary()
        while self._peek().kind == "OP" and self._peek().text in ("*", "/"):
            op = self._next()
            left = Binary(op.text, left, self.unary(), op.line, op.column)
        return left

    def unary(self) -> Node:
        if self._is("OP", "-"):
            op = self._next()
            return Unary("-", self.unary(), op.line, op.column)
        return self.atom()

    def atom(self) -> Node:
        token = self._next()
        if token.kind == "NUMBER":
            return Number(float(token.text), token.line, token.column)
        if token.kind == "STRING":
            return Text(_unquote(token.text), token.line, token.column)
        if token.kind == "NAME":
            if token.text in ("true", "false"):
                return Boolean(token.text == "true", token.line, token.column)
            if token.text in KEYWORDS:
                raise self._error(f"expected a value, found {_shown(token)}", token)
            return Name(token.text, token.line, token.column)
        if token.kind == "OP" and token.text == "(":
            inner = self.expr()
            self._expect("OP", ")", "')'")
            return inner
        raise self._error(f"expected a value, found {_shown(token)}", token)


def _shown(token: Token) -> str:
    return "the end of the line" if token.kind == "END" else repr(token.text)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def strip_comment(line: str) -> str:
    """The line without its ``#`` comment (a ``#`` inside a string is kept)."""
    quote = ""
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote:
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:i]
    return line


def parse_rules(text: str, source: str = "rules") -> list[ParsedRule]:
    """Every rule of a rule file, in order; :class:`RuleSyntaxError` at the first error.

    >>> [r.name for r in parse_rules("a: amount > 1 -> review\\n# note\\nb: 1 < 2 -> decline")]
    ['a', 'b']
    >>> parse_rules("a: amount >> 1 -> review")
    Traceback (most recent call last):
    ...
    models.rules.syntax.RuleSyntaxError: rules:1:12: expected a value, found '>'
    """
    rules: list[ParsedRule] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if contains_card_number(raw):
            # A rule's text is copied into every decision it fires on, and decisions are
            # immutable: a card number there could never be removed.
            raise RuleSyntaxError(
                "a card number cannot be written in a rule file (its text is recorded with "
                "every decision the rule fires on)",
                number,
                1,
                source,
            )
        line = strip_comment(raw)
        if not line.strip():
            continue
        try:
            parsed = _Parser(tokenize(line, number, source), source).rule(line)
        except RecursionError:
            # A crafted rule of hundreds of nested terms: an error with its line, never a
            # traceback (and never a different verdict between `rules check` and serve).
            raise RuleSyntaxError("the rule nests too deeply", number, 1, source) from None
        if parsed.name in seen:
            column = line.index(parsed.name) + 1
            raise RuleSyntaxError(
                f"rule {parsed.name!r} is already defined on line {seen[parsed.name]}",
                number,
                column,
                source,
            )
        seen[parsed.name] = number
        rules.append(parsed)
    return rules
