"""``decode_model`` decides exactly as ``Transaction.model_validate(json.loads(body))`` does.

``decode_model`` tries pydantic's JSON parser on the raw bytes first and falls back on the
standard library's parser and Python-mode validation when that refuses. The fast path is
only sound if it never accepts a body the slow path refuses, and accepts every other one
as the very same transaction; and whatever is refused must be refused with the slow
path's errors (what clients were told before). A property test throws mutated bodies at
both (broken JSON, odd encodings, odd numbers, odd strings, odd timestamps); fixed cases
pin the edges named in the design; a spy proves valid bodies take the fast path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features import schema
from features.schema import InvalidJson, Transaction, decode_model

FIELDS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")


@dataclass(frozen=True)
class Refused:
    """How a body was refused: "json" (message) or "model" (the errors, comparably)."""

    kind: str
    detail: object


def error_summary(exc: ValidationError) -> list[tuple[Any, ...]]:
    # ctx holds exception objects (compared by identity) and inputs may be NaN (never equal
    # to itself): compare type, location, message and the input's repr.
    return [
        (e["type"], e["loc"], e["msg"], repr(e.get("input"))) for e in exc.errors(include_url=False)
    ]


def slow_path(body: bytes) -> Transaction | Refused:
    """The reference: the standard library's parser, then Python-mode validation."""
    try:
        data = json.loads(body)
    except RecursionError:
        return Refused("json", "not valid JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        return Refused("json", f"not valid JSON: {exc}")
    try:
        return Transaction.model_validate(data)
    except ValidationError as exc:
        return Refused("model", error_summary(exc))


def decoded(body: bytes) -> Transaction | Refused:
    try:
        return decode_model(Transaction, body)
    except InvalidJson as exc:
        return Refused("json", str(exc))
    except ValidationError as exc:
        return Refused("model", error_summary(exc))


def check_same_decision(body: bytes) -> None:
    got, expected = decoded(body), slow_path(body)
    if isinstance(expected, Refused) or isinstance(got, Refused):
        assert got == expected, body[:300]
        return
    assert got == expected, body[:300]
    # Equality of aware datetimes ignores the offset; the offset matters (calendar features
    # use the wall clock as written), so compare the canonical form and the offset too.
    assert got.canonical_json == expected.canonical_json
    assert got.timestamp.isoformat() == expected.timestamp.isoformat()
    assert got.digest == expected.digest


# ---------------------------------------------------------------- body generation
#
# A body is a list of (key, value) pairs of raw JSON text, so that keys can repeat and
# values can be any text at all; mutations work on the pairs, on the text, on the bytes.

Pairs = list[tuple[str, str]]


def valid_pairs() -> Pairs:
    return [
        ('"transaction_id"', '"tx-1"'),
        ('"timestamp"', '"2024-03-01T12:00:00+02:00"'),
        ('"customer_id"', '"c-1"'),
        ('"terminal_id"', '"t-1"'),
        ('"amount"', "12.5"),
    ]


def json_string(text: str, ascii_only: bool = False) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


JUNK_TIMESTAMPS = [
    "",
    "yesterday",
    "2024-13-01T00:00:00",
    "2024-02-30",
    "12:00",
    "2024-W09-5",
    "2024-03-01T25:00:00",
    "2024-03-01T12:00:00+24:00",
    "１２",
]
OFFSETS = ["", "Z", "z", "+00:00", "-00:00", "+02:00", "-05:30", "+0200", "+02", "+14:00"]
OFFSETS += ["+02:00:30", "-23:59"]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Timestamp texts: offsets or none, Z, fractions of 1..9 digits, date only, far
    future, near future, and a few that are not ISO 8601 at all."""
    kind = draw(st.sampled_from(["past", "future", "near-future", "date-only", "junk"]))
    if kind == "junk":
        return draw(st.sampled_from(JUNK_TIMESTAMPS))
    if kind in ("future", "near-future"):
        # Relative to now: more than a day ahead is refused, less is accepted.
        hours = draw(st.integers(25, 24 * 400) if kind == "future" else st.integers(-48, 20))
        moment = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=hours)
    else:
        moment = draw(st.datetimes(datetime(1, 1, 2), datetime(2024, 12, 31)))
    if kind == "date-only":
        return moment.date().isoformat()
    separator = draw(st.sampled_from("T "))
    text = f"{moment.date().isoformat()}{separator}{moment.hour:02d}:{moment.minute:02d}"
    if draw(st.booleans()):
        text += f":{moment.second:02d}"
        digits = draw(st.integers(0, 9))
        if digits:
            text += "." + "".join(
                draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits))
            )
    offset = draw(st.sampled_from(OFFSETS))
    return text + offset


AMOUNT_TEXTS = [
    "12",
    "12.0",
    "12.5",
    "1e2",
    "1E+2",
    "1.5e-3",
    "0",
    "-0",
    "-12.5",
    "0.0",
    "1000000",
    "1000000.0",
    "1000000.0000000001",
    "1000000.000001",
    "1e6",
    "1e400",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "1" + "0" * 400,  # 10**400: an int far beyond any float
    "1" + "0" * 4299,  # the longest integer Python's parser takes
    "1" + "0" * 4300,  # one digit more: refused by json.loads
    "1" + "0" * 4400 + ".5",  # as long, but a float
    "9007199254740993",
    "NaN",
    "Infinity",
    "-Infinity",
    "-NaN",
    "nan",
    "+1",
    "012",
    ".5",
    "5.",
    "0x10",
    '"12.5"',
    "true",
    "false",
    "null",
    "[]",
    "{}",
]

WRONG_TYPES = ["null", "true", "false", "0", "123", "1.5", '""', '"x"', "[]", "{}", '["tx-1"]']

ODD_STRINGS = [
    "\\u0000",  # escaped control characters: valid JSON, refused by the id pattern
    "\\u001f",
    "\\u007f",
    "\\ud800",  # an escaped lone surrogate: valid to json.loads, not to pydantic's parser
    "\\udfff",
    "\\ude00\\ud83d",  # a surrogate pair the wrong way round
    "\\ud83d\\ude00",  # a proper pair: one emoji
    "\x01",  # raw control characters: invalid JSON
    "\x1f",
    "\t",
    "\n",
    "\x7f",  # raw DEL: valid JSON, refused by the id pattern
    "\u2028",
    "\\/",
    '\\"',
    "\\\\",
    "\\x41",  # not a JSON escape
    "\\u12",
    ".",
    "..",
    "x" * 129,  # too long for an id
]

# JSON whitespace, and (in one body of five) characters that only look like it.
JSON_WHITESPACE = ["", "", "", " ", "\t", "\n", "\r", "\r\n  "]
WHITESPACE = [*JSON_WHITESPACE, "\x0b", "\x0c", "\u00a0", "\u2028", "\u3000"]
TRAILING = ["x", ",", "}", "]", "{}", "\x00", "null", " 1", "//", "\n\n", " \t"]
INVALID_BYTES = [b"\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
# Mostly UTF-8; json.loads also detects UTF-16 and UTF-32 (and skips a UTF-8 BOM).
ENCODINGS = ["utf-8"] * 10 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"]


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def values(draw: st.DrawFn) -> str:
    """Any JSON value text, good or bad."""
    choice = draw(st.sampled_from(["string", "odd", "amount", "wrong", "nested", "ts"]))
    if choice == "string":
        return json_string(draw(st.text(max_size=10)), draw(st.booleans()))
    if choice == "odd":
        return '"t' + draw(st.sampled_from(ODD_STRINGS)) + '"'
    if choice == "amount":
        return draw(st.sampled_from(AMOUNT_TEXTS))
    if choice == "wrong":
        return draw(st.sampled_from(WRONG_TYPES))
    if choice == "ts":
        return json_string(draw(timestamps()))
    depth = draw(st.sampled_from([1, 2, 50, 199, 200, 201, 500, 100_000]))
    return nested(depth, draw(st.sampled_from(["array", "object"])))


MUTATIONS = ["drop", "unknown", "duplicate", "replace", "escape-key", "currency", "id", "ts"]
MUTATIONS += ["amount", "amount"]


@st.composite
def mutate_pairs(draw: st.DrawFn, pairs: Pairs) -> Pairs:
    pairs = list(pairs)
    what = draw(st.sampled_from(MUTATIONS))
    if what == "drop" and pairs:
        del pairs[draw(st.integers(0, len(pairs) - 1))]
    elif what == "unknown":
        key = json_string(draw(st.sampled_from(["extra", "Amount", "transactionId", "", "a"])))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(values())))
    elif what == "duplicate":
        # The same key again, before or after, with another value: the last one counts
        # for json.loads; pydantic's parser must agree.
        key = json_string(draw(st.sampled_from(FIELDS)))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(values())))
    elif what == "replace" and pairs:
        i = draw(st.integers(0, len(pairs) - 1))
        pairs[i] = (pairs[i][0], draw(values()))
    elif what == "escape-key" and pairs:
        # "\u0061mount" is the key "amount", written differently.
        i = draw(st.integers(0, len(pairs) - 1))
        key = json.loads(pairs[i][0]) if pairs[i][0].startswith('"') else "x"
        pairs[i] = (json_string(key, True).replace("a", "\\u0061", 1), pairs[i][1])
    elif what == "currency":
        value = draw(st.sampled_from(['"EUR"', '"eur"', "null", '"EURO"', '"EU"', "978"]))
        pairs.append(('"currency"', value))
    elif what == "id":
        field = draw(st.sampled_from(["transaction_id", "customer_id", "terminal_id"]))
        text = draw(st.text(min_size=0, max_size=12))
        value = draw(st.one_of(st.just(json_string(text, draw(st.booleans()))), values()))
        pairs = [(k, value if k == f'"{field}"' else v) for k, v in pairs]
    elif what == "ts":
        value = json_string(draw(timestamps()))
        pairs = [(k, value if k == '"timestamp"' else v) for k, v in pairs]
    elif what == "amount":
        value = draw(
            st.one_of(st.sampled_from(AMOUNT_TEXTS), long_decimals(), st.floats().map(repr))
        )
        pairs = [(k, value if k == '"amount"' else v) for k, v in pairs]
    return pairs


@st.composite
def long_decimals(draw: st.DrawFn) -> str:
    """Decimal texts with many digits: both parsers must round them to the same float."""
    whole = draw(st.integers(0, 999_999))
    fraction = draw(st.text(alphabet="0123456789", min_size=1, max_size=30))
    exponent = draw(st.one_of(st.just(""), st.integers(-20, 3).map(lambda e: f"e{e}")))
    return f"{whole}.{fraction}{exponent}"


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    pairs = valid_pairs()
    for _ in range(draw(st.integers(0, 3))):
        pairs = draw(mutate_pairs(pairs))
    ws = st.sampled_from(draw(st.sampled_from([JSON_WHITESPACE] * 4 + [WHITESPACE])))
    members = [f"{draw(ws)}{k}{draw(ws)}:{draw(ws)}{v}{draw(ws)}" for k, v in pairs]
    text = draw(ws) + "{" + ",".join(members) + "}" + draw(ws)
    shape = draw(st.sampled_from(["object"] * 6 + ["array", "garbage", "scalar", "truncated"]))
    if shape == "array":
        text = f"[{text}]"
    elif shape == "garbage":
        text += draw(st.sampled_from(TRAILING))
    elif shape == "scalar":
        text = draw(values())
    elif shape == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        body = text.encode(encoding, "surrogatepass")
    except UnicodeEncodeError:  # latin-1 cannot hold every character: then plain UTF-8
        body = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(INVALID_BYTES)) + body[at:]
    return body


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies())
def test_decode_model_decides_as_the_slow_path(body: bytes) -> None:
    check_same_decision(body)


def _body(**changes: str) -> bytes:
    pairs = dict(valid_pairs())
    for key, value in changes.items():
        pairs[f'"{key}"'] = value
    return ("{" + ",".join(f"{k}:{v}" for k, v in pairs.items()) + "}").encode()


VALID = _body()
EDGES = {
    "valid": VALID,
    "utf-8 BOM": b"\xef\xbb\xbf" + VALID,
    "utf-16": VALID.decode().encode("utf-16"),
    "utf-16-be": VALID.decode().encode("utf-16-be"),
    "utf-32": VALID.decode().encode("utf-32"),
    "whitespace around": b" \t\r\n" + VALID + b"\n ",
    "form feed": b"\x0c" + VALID,
    "trailing garbage": VALID + b"x",
    "two documents": VALID + VALID,
    "duplicate id": VALID[:-1] + b',"transaction_id":"tx-2"}',
    "duplicate amount, bad first": _body(amount='"bad","amount":3'),
    "duplicate amount, bad last": _body(amount='3,"amount":"bad"'),
    "10**400": _body(amount="1" + "0" * 400),
    "4301-digit int overridden": _body(amount="1" + "0" * 4300 + ',"amount":12.5'),
    "4301-digit float overridden": _body(amount="1" + "0" * 4300 + '.0,"amount":12.5'),
    "NaN": _body(amount="NaN"),
    "Infinity": _body(amount="Infinity"),
    "-Infinity": _body(amount="-Infinity"),
    "1e400": _body(amount="1e400"),
    "int amount": _body(amount="12"),
    "bool amount": _body(amount="true"),
    "string amount": _body(amount='"12.5"'),
    "lone surrogate": _body(transaction_id='"tx\\ud800"'),
    "lone surrogate currency": _body(currency='"\\ud800"'),
    "escaped NUL": _body(customer_id='"c\\u0000"'),
    "raw control": _body(customer_id='"c\x01"'),
    "invalid utf-8": VALID.replace(b'"c-1"', b'"c\xff"'),
    "utf-8 surrogate bytes": VALID.replace(b'"c-1"', b'"c\xed\xa0\x80"'),
    "deep extra": _body(extra="[" * 100_000 + "]" * 100_000),
    "shallow extra": _body(extra="[" * 300 + "]" * 300),
    "unknown key": _body(extra="1"),
    "missing amount": VALID.replace(b',"amount":12.5', b""),
    "Z": _body(timestamp='"2024-03-01T12:00:00Z"'),
    "no offset": _body(timestamp='"2024-03-01T12:00:00"'),
    "9 fraction digits": _body(timestamp='"2024-03-01T12:00:00.123456789+02:00"'),
    "1 fraction digit": _body(timestamp='"2024-03-01T12:00:00.1-05:30"'),
    "date only": _body(timestamp='"2024-03-01"'),
    "offset seconds": _body(timestamp='"2024-03-01T12:00:00+02:00:30"'),
    "far future": _body(timestamp='"2999-01-01T00:00:00Z"'),
    "number timestamp": _body(timestamp="1709294400"),
    "array": b"[" + VALID + b"]",
    "empty": b"",
    "null": b"null",
}


@pytest.mark.parametrize("body", EDGES.values(), ids=EDGES.keys())
def test_edges_decide_as_the_slow_path(body: bytes) -> None:
    check_same_decision(body)


def test_a_valid_body_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    validate = Transaction.model_validate
    parse = schema.loads

    def spy_validate(obj: Any, *args: Any, **kwargs: Any) -> Transaction:
        calls.append("model_validate")
        return validate(obj, *args, **kwargs)

    def spy_loads(data: bytes | str) -> object:
        calls.append("loads")
        return parse(data)

    monkeypatch.setattr(Transaction, "model_validate", spy_validate)
    monkeypatch.setattr(schema, "loads", spy_loads)
    tx = decode_model(Transaction, VALID)
    assert tx == Transaction.model_validate_json(VALID)
    assert calls == []  # neither the standard library's parser nor Python-mode validation
    # The spies do see the slow path, which a UTF-16 body needs.
    assert decode_model(Transaction, VALID.decode().encode("utf-16")) == tx
    assert calls == ["loads", "model_validate"]
