"""Lenient decoding of the JSON that language models write.

Local models write almost-JSON: Python dict literals with single quotes and ``True``/``None``, trailing commas,
``//`` and ``#`` comments, literal ``\\n`` escapes between tokens. :func:`decode_values` accepts those (strict JSON
first, then a string-aware normalisation pass, then :func:`ast.literal_eval`) and says precisely why when it cannot.
Everything here is plain string scanning (regular expressions only to jump to the next character that matters,
possessive so they never backtrack); no third-party parser. Every pass is linear in its input, and the lenient
passes read at most :data:`MAX_LENIENT_CHARS` (past it only strict JSON is accepted, with an error that says so).
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
_NON_WS = re.compile(r"[^ \t\r\n]")
MAX_LENIENT_CHARS = 1_000_000
"""Longest text the lenient passes (normalisation, bracket repair) read; past it only strict JSON decodes."""
MAX_DEPTH = 512
"""Deepest nesting :func:`scan_value_end` follows (the JSON decoder itself stops near the recursion limit)."""
MAX_LITERAL_CHARS = 100_000
"""Longest text handed to :func:`ast.literal_eval`, which builds a whole syntax tree in memory."""
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
    too_deep: bool = False
    """The value nests deeper than :data:`MAX_DEPTH`; the scan stopped there."""


def excerpt(text: str, limit: int = 60, start: int = 0) -> str:
    """A short one-line quote of ``text`` (from ``start``) for error messages; reads only what it quotes."""
    m = _NON_WS.search(text, start)
    if m is None:
        return repr("")
    end = m.start() + limit + 1
    flat = text[m.start() : end]
    if _NON_WS.search(text, end) is None:
        flat = flat.rstrip()
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def scan_value_end(text: str, start: int, stop: int | None = None) -> ScanEnd:
    """Find the end of the bracketed value that opens at ``text[start]`` (``{`` or ``[``), reading nothing at or
    past ``stop`` (default: the end of ``text``), so a caller scanning many values bounds each by its own region.

    String-aware (double and single quotes, backslash escapes) and comment-aware, so a ``}`` or a closing tag
    inside a string never ends the value. A closer that belongs to an outer bracket closes the inner ones too
    (``[{"a": 1]``: the model dropped a ``}``), and a closer that matches nothing open is skipped, as
    :func:`rebalance` repairs them.
    """
    stack: list[str] = []
    n = len(text) if stop is None else min(stop, len(text))
    i = start
    while i < n:
        m = _SPECIAL.search(text, i, n)  # jump to the next character that matters, in C
        if m is None:
            break
        i = m.start()
        c = text[i]
        if c == '"' or c == "'":
            j = _string_end(text, i, n)
            if j is None:
                return ScanEnd(None, f"a string opened at offset {i - start} is never closed")
            i = j
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
            if len(stack) > MAX_DEPTH:
                return ScanEnd(None, f"nested more than {MAX_DEPTH} levels deep", too_deep=True)
        elif c in "}]":
            if c in stack:
                while stack.pop() != c:
                    pass
            if not stack:
                return ScanEnd(i + 1)
        elif c == "/" and text.startswith("//", i, n) or c == "#":
            k = text.find("\n", i, n)
            i = n if k < 0 else k
            continue
        elif c == "/" and text.startswith("/*", i, n):
            k = text.find("*/", i + 2, n)
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


def _string_end(text: str, i: int, stop: int | None = None) -> int | None:
    """Index just past the string literal that opens at ``text[i]`` (and ends before ``stop``), or None."""
    m = _STRING_REST[text[i]].match(text, i + 1, len(text) if stop is None else stop)
    return m.end() if m else None


# One alternation over what normalize() rewrites, so the plain runs between them are copied in C. Strings come
# first (their contents are never touched); the trailing-comma lookahead allows whitespace and line comments only,
# so it never looks further than the next token.
_NORMALIZE = re.compile(
    r"""(?=["'#/\\,\w])"""  # a cheap first-character test before the alternation
    r"""(?:(?P<dq>"(?:[^"\\]++|\\.)*+"?)"""
    r"""|(?P<sq>'(?:[^'\\]++|\\.)*+')"""
    r"""|(?P<sqrest>'.*)"""
    r"""|(?P<comment>\#[^\n]*+|//[^\n]*+|/\*(?:[^*]++|\*(?!/))*+(?:\*/)?)"""
    r"""|(?P<esc>\\[nrt])"""
    r"""|(?P<comma>,(?=(?:\s++|\#[^\n]*+|//[^\n]*+)*+[}\]]))"""
    r"""|(?P<word>[^\W\d]\w*+))""",
    re.S,
)
_KEY_BEFORE = re.compile(r"[{,]\s*+$")
_KEY_AFTER = re.compile(r"\s*+:")


def _normalize_token(m: re.Match[str]) -> str:
    kind, s = m.lastgroup, m.group()
    if kind == "sq":
        body = s[1:-1]
        if "\\" not in body and '"' not in body:  # the common case; raw control characters are fine (strict=False)
            return '"' + body + '"'
        return json.dumps(_unescape_single(body), ensure_ascii=False)
    if kind in ("comment", "comma"):
        return ""
    if kind == "esc":
        return " "
    if kind == "word":
        text, start = m.string, m.start()
        if _KEY_AFTER.match(text, m.end()) and _KEY_BEFORE.search(text, max(0, start - 64), start):
            return '"' + s + '"'  # a bare object key, as in JavaScript
        return _PY_CONSTANTS.get(s, s)
    return s  # dq, sqrest: kept as written


def normalize(text: str) -> str:
    """Rewrite almost-JSON as JSON: drop comments and trailing commas, turn single-quoted strings into
    double-quoted ones, ``True``/``False``/``None`` into ``true``/``false``/``null``, bare object keys into quoted
    ones, and literal ``\\n`` escapes written between tokens into spaces. Text inside strings is never touched.
    One regular-expression pass: linear in the length of ``text``."""
    return _NORMALIZE.sub(_normalize_token, text)


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


def decode_prefix(text: str, start: int, stop: int | None = None) -> tuple[Any, int] | None:
    """The strict JSON value that starts at ``start`` (read no further than ``stop``) and where it ends, or None
    (the fast path: one C call). It reads a copy of the region: a JSON error counts the lines before its position,
    which over the whole text would cost every failing block the length of the text before it."""
    region = text if start == 0 and stop is None else text[start:stop]
    try:
        value, end = _DECODER.raw_decode(region)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value, start + end


def _decode_all(text: str) -> list[Any]:
    """Every JSON value in ``text`` one after another (``{...}{...}`` is two values). Raises JSONDecodeError."""
    values: list[Any] = []
    i = 0
    while (m := _NON_WS.search(text, i)) is not None:
        value, i = _DECODER.raw_decode(text, m.start())
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
    model to correct itself). Text longer than :data:`MAX_LENIENT_CHARS` gets the strict parse only.
    """
    try:
        return _decode_all(text), None
    except json.JSONDecodeError as e:
        first_error = e
    except RecursionError:
        return None, _too_deep(text)
    near = text[max(0, first_error.pos - 20) : first_error.pos + 20]
    why = (f"invalid JSON at line {first_error.lineno} column {first_error.colno}: {first_error.msg} "
           f"(near {excerpt(near, 44)})")
    if len(text) > MAX_LENIENT_CHARS:
        return None, (f"{why}; the value is {len(text):,} characters, past the {MAX_LENIENT_CHARS:,} that lenient "
                      "decoding (single quotes, trailing commas, comments) reads: write strict JSON")
    normalized = normalize(text)
    try:
        return _decode_all(normalized), None
    except RecursionError:  # deeper than the decoder goes: no repair below can help
        return None, _too_deep(text)
    except json.JSONDecodeError:
        pass
    rebalanced = rebalance(normalized)
    if rebalanced != normalized:
        try:
            return _decode_all(rebalanced), None
        except (json.JSONDecodeError, RecursionError):
            pass
    if len(text) <= MAX_LITERAL_CHARS:
        try:
            # Last resort for Python syntax normalize() does not cover (triple quotes, tuples).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return [_jsonable(ast.literal_eval(text.strip()))], None
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None, why


def _too_deep(text: str) -> str:
    return f"JSON nested too deeply to decode (it starts {excerpt(text, 30)})"
