"""Lenient decoding of the JSON that language models write.

Local models write almost-JSON: Python dict literals with single quotes and ``True``/``None``, trailing commas,
``//`` and ``#`` comments, literal ``\\n`` escapes between tokens. :func:`decode_values` accepts those (strict JSON
first, then a string-aware normalisation pass, then :func:`ast.literal_eval`) and says precisely why when it cannot.
Everything here is plain string scanning (regular expressions only to jump to the next character that matters,
possessive so they never backtrack); no third-party parser.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines/tabs inside strings, as models write code
_PY_CONSTANTS = {"True": "true", "False": "false", "None": "null"}
_WS = " \t\r\n"
_SPECIAL = re.compile(r"[\"'{}\[\]#/]")
# the rest of a string literal after its opening quote, escapes included (possessive: no backtracking)
_STRING_REST = {'"': re.compile(r'(?:[^"\\]++|\\.)*+"', re.S), "'": re.compile(r"(?:[^'\\]++|\\.)*+'", re.S)}


@dataclass(frozen=True)
class ScanEnd:
    """Where a bracketed value ends. ``end`` is None when the text ran out first; ``state`` then says how and
    ``closers`` holds the brackets that would close it (empty when a string was left open)."""

    end: int | None
    state: str = ""
    closers: str = ""


def excerpt(text: str, limit: int = 60) -> str:
    """A short one-line quote of ``text`` for error messages."""
    flat = text.strip()
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def scan_value_end(text: str, start: int) -> ScanEnd:
    """Find the end of the bracketed value that opens at ``text[start]`` (``{`` or ``[``).

    String-aware (double and single quotes, backslash escapes) and comment-aware, so a ``}`` or a closing tag
    inside a string never ends the value. A closer that belongs to an outer bracket closes the inner ones too
    (``[{"a": 1]``: the model dropped a ``}``), and a closer that matches nothing open is skipped, as
    :func:`rebalance` repairs them.
    """
    stack: list[str] = []
    i, n = start, len(text)
    while i < n:
        m = _SPECIAL.search(text, i)  # jump to the next character that matters, in C
        if m is None:
            break
        i = m.start()
        c = text[i]
        if c == '"' or c == "'":
            j = _string_end(text, i)
            if j is None:
                return ScanEnd(None, f"a string opened at offset {i - start} is never closed")
            i = j
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if c in stack:
                while stack.pop() != c:
                    pass
            if not stack:
                return ScanEnd(i + 1)
        elif c == "/" and text.startswith("//", i) or c == "#":
            k = text.find("\n", i)
            i = n if k < 0 else k
            continue
        elif c == "/" and text.startswith("/*", i):
            k = text.find("*/", i + 2)
            i = n if k < 0 else k + 2
            continue
        i += 1
    return ScanEnd(None, f"{len(stack)} bracket(s) still open", "".join(reversed(stack)))


def rebalance(text: str) -> str:
    """Repair mismatched brackets the way models drop them: a closer that belongs to an outer bracket gets the
    missing inner closers inserted before it, and a closer that matches nothing open is dropped. Brackets still
    open at the end are left open: that is a cut-off output, not a typo, and must not be completed."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while True:
        m = _SPECIAL.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        k = m.start()
        out.append(text[i:k])
        c = text[k]
        if c in "\"'":
            end = _string_end(text, k) or len(text)
            out.append(text[k:end])
            i = end
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if c not in stack:
                i = k + 1
                continue
            while (top := stack.pop()) != c:
                out.append(top)
        out.append(c)
        i = k + 1
    return "".join(out)


def _string_end(text: str, i: int) -> int | None:
    """Index just past the string literal that opens at ``text[i]``, or None if it never closes."""
    m = _STRING_REST[text[i]].match(text, i + 1)
    return m.end() if m else None


def normalize(text: str) -> str:
    """Rewrite almost-JSON as JSON: drop comments and trailing commas, turn single-quoted strings into
    double-quoted ones, ``True``/``False``/``None`` into ``true``/``false``/``null``, and literal ``\\n``
    escapes written between tokens into spaces. Text inside strings is never touched."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = _string_end(text, i) or n
            out.append(text[i:j])
            i = j
        elif c == "'":
            j = _string_end(text, i)
            if j is None:
                out.append(text[i:])
                break
            out.append(json.dumps(_unescape_single(text[i + 1 : j - 1]), ensure_ascii=False))
            i = j
        elif c == "#" or (c == "/" and text.startswith("//", i)):
            k = text.find("\n", i)
            i = n if k < 0 else k
        elif c == "/" and text.startswith("/*", i):
            k = text.find("*/", i + 2)
            i = n if k < 0 else k + 2
        elif c == "\\" and i + 1 < n and text[i + 1] in "nrt":
            out.append(" ")
            i += 2
        elif c == ",":
            k = _skip_blank(text, i + 1)
            if k < n and text[k] in "}]":
                i = k  # trailing comma: drop it
            else:
                out.append(c)
                i += 1
        elif c.isalpha() or c == "_":
            k = i + 1
            while k < n and (text[k].isalnum() or text[k] == "_"):
                k += 1
            word = text[i:k]
            m = k
            while m < n and text[m] in _WS:
                m += 1
            if m < n and text[m] == ":" and _last_token(out) in ("{", ","):
                out.append(json.dumps(word))  # a bare object key, as in JavaScript
            else:
                out.append(_PY_CONSTANTS.get(word, word))
            i = k
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _skip_blank(text: str, k: int) -> int:
    """Past whitespace and comments."""
    n = len(text)
    while k < n:
        if text[k] in _WS:
            k += 1
        elif text[k] == "#" or text.startswith("//", k):
            nl = text.find("\n", k)
            k = n if nl < 0 else nl
        elif text.startswith("/*", k):
            close = text.find("*/", k + 2)
            k = n if close < 0 else close + 2
        else:
            break
    return k


def _last_token(out: list[str]) -> str:
    """The last non-blank character written so far."""
    for piece in reversed(out):
        stripped = piece.rstrip()
        if stripped:
            return stripped[-1]
    return ""


def _unescape_single(body: str) -> str:
    """The value of a single-quoted Python string body (``\\'`` and the usual escapes)."""
    if "\\" not in body:
        return body
    try:
        with warnings.catch_warnings():  # unknown escapes like \d warn; the model meant them literally
            warnings.simplefilter("ignore")
            value = ast.literal_eval("'" + body + "'")
    except (ValueError, SyntaxError):
        return body.replace("\\'", "'")
    return value if isinstance(value, str) else body


def decode_prefix(text: str, start: int) -> tuple[Any, int] | None:
    """The strict JSON value that starts at ``start`` and where it ends, or None (the fast path: one C call)."""
    try:
        return _DECODER.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError):
        return None


def _decode_all(text: str) -> list[Any]:
    """Every JSON value in ``text`` one after another (``{...}{...}`` is two values). Raises JSONDecodeError."""
    values: list[Any] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            break
        value, i = _DECODER.raw_decode(text, i)
        values.append(value)
    if not values:
        raise json.JSONDecodeError("no JSON value", text, 0)
    return values


def _jsonable(value: Any) -> Any:
    """Python literal -> JSON-compatible value (tuples become lists); sets, bytes and complex are refused."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"a Python {type(value).__name__} literal has no JSON equivalent")


def decode_values(text: str) -> tuple[list[Any] | None, str | None]:
    """Decode one or more consecutive JSON values, leniently. Returns ``(values, None)`` or ``(None, why)``.

    ``why`` names the position and the problem of the strict JSON parse (the most useful of the attempts for a
    model to correct itself).
    """
    try:
        return _decode_all(text), None
    except json.JSONDecodeError as e:
        first_error = e
    except RecursionError:
        return None, f"JSON nested too deeply to decode (it starts {excerpt(text, 30)})"
    normalized = normalize(text)
    try:
        return _decode_all(normalized), None
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return _decode_all(rebalance(normalized)), None
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        # Last resort for Python syntax normalize() does not cover (triple quotes, tuples).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [_jsonable(ast.literal_eval(text.strip()))], None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    e = first_error
    near = text[max(0, e.pos - 20) : e.pos + 20]
    return None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg} (near {excerpt(near, 44)})"
