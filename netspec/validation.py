"""The one translator of pydantic validation errors into netspec's words, for op parameters,
the train block and `--set` values."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

_PHRASES = [
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"must be at least \1"),
    (re.compile(r"Input should be greater than (\S+)"), r"must be greater than \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"must be at most \1"),
    (re.compile(r"Input should be less than (\S+)"), r"must be less than \1"),
    (re.compile(r"Input should be a valid integer.*"), "must be an integer"),
    (re.compile(r"Input should be a valid number.*"), "must be a number"),
    (re.compile(r"Input should be a valid boolean.*"), "must be true or false"),
    (re.compile(r"Input should be a valid string.*"), "must be a string"),
    (re.compile(r"Input should be a valid (tuple|list).*"), "must be a list"),
    (re.compile(r"Input should be a finite number"), "must be a finite number"),
    (re.compile(r"^expected an integer, got .*"), "must be an integer"),
    (re.compile(r"^expected a number, got a boolean"), "must be a number, not true or false"),
]


def words(msg: str) -> str:
    """pydantic's phrase as netspec says it: "Input should be greater than or equal to 1" ->
    "must be at least 1"."""
    for pattern, repl in _PHRASES:
        if pattern.search(msg):
            return pattern.sub(repl, msg)
    return msg


def messages(e: ValidationError) -> list[tuple[tuple, str, Any]]:
    """(loc, message, input) per field, merging the alternatives of a union into one line."""
    merged: dict[tuple, list[str]] = {}
    inputs: dict[tuple, Any] = {}
    for err in e.errors():
        loc = tuple(x for x in err["loc"] if isinstance(x, (str, int))
                    and not (isinstance(x, str) and ("[" in x or "-" in x)))
        msg = words(err["msg"].replace("Value error, ", ""))
        merged.setdefault(loc, [])
        if msg not in merged[loc]:
            merged[loc].append(msg)
        inputs.setdefault(loc, err.get("input"))
    return [(loc, "; or ".join(msgs), inputs[loc]) for loc, msgs in merged.items()]


def first(e: ValidationError) -> tuple[tuple, str, Any]:
    return messages(e)[0]


def choose_word(msg: str) -> tuple[str, list[str]]:
    """For a misspelt word, keep the union's "Input should be 'a', 'b'" line and its words."""
    lines = [m for m in msg.split("; or ") if m.startswith("Input should be '")]
    if not lines:
        return msg, []
    return lines[0], re.findall(r"'([^']*)'", lines[0])
