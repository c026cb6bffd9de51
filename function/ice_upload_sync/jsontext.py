"""JSON text measured before it is parsed, so ``json`` never recurses near the interpreter's limit.

``json``'s C parser recurses once per level of nesting and stops only at the recursion limit,
with ``RecursionError``. Catching that is not enough: while the parser sits a thousand levels
deep, whatever else runs on that stack (a finalizer the garbage collector calls, a logging
handler) fails as well, as an "unraisable" exception that nobody can catch. So every text that
comes from outside (an event, ICE's UserData, a file a person can edit) is measured first,
without recursion, and text nested deeper than asked is refused before ``json`` sees it.
Pure: no I/O.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Union

# Deeper than anything this project writes or reads (a record is 1 level, its user_data at most
# 32 more) and far below the recursion limit (1,000), with room for the stack beneath the parser.
PARSE_DEPTH = 100

Text = Union[str, bytes, bytearray]

# a complete JSON string, escapes included (the unrolled loop: no backtracking blow-up)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NOT_BRACKET_BYTES = re.compile(rb"[^\[\]{}]+")


class TooDeep(ValueError):
    """JSON text nested deeper than the limit it was read with."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def nested_deeper_than(text: Text, limit: int) -> bool:
    """True when ``text`` opens more than ``limit`` arrays and objects inside one another.

    Exact for valid JSON: brackets inside strings do not count, and ``[]`` is one level, as
    for a parsed value. For text that is not JSON the answer is at worst an overestimate of
    text ``json`` would refuse anyway; a string left open hides what follows it, as it would
    from ``json``. Linear in the text; a text with at most ``limit`` brackets costs two counts.
    """
    if isinstance(text, str):
        opening, strings, others, quote = "[{", _STRING, _NOT_BRACKET, '"'
    else:
        opening, strings, others, quote = b"[{", _STRING_BYTES, _NOT_BRACKET_BYTES, b'"'
    if text.count(opening[:1]) + text.count(opening[1:]) <= limit:
        return False
    outside = strings.sub(opening[:0], text)
    unclosed = outside.find(quote)
    if unclosed >= 0:
        outside = outside[:unclosed]
    brackets = others.sub(opening[:0], outside)
    return any(depth > limit for depth in accumulate(1 if c in opening else -1 for c in brackets))


def loads(text: Text, *, max_depth: int = PARSE_DEPTH, **options: Any) -> Any:
    """``json.loads`` of text nested at most ``max_depth`` levels; ``TooDeep`` (a ``ValueError``)
    otherwise, so every caller's ``except ValueError`` for text that is not JSON covers it."""
    if nested_deeper_than(text, max_depth):
        raise TooDeep(max_depth)
    return json.loads(text, **options)
