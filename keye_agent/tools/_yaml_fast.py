"""The fast reader of large YAML files: rapidyaml builds the tree in C++, its JSON emitter and :func:`json.loads`
build the values in C, and positions are looked up in the tree only when an error asks for one.

The event composer of :mod:`._yaml_compose` is the reference: this reader gives the same values and the same
positions, or declines (returns ``None``) and leaves the file to it. It declines whatever it does not reproduce
exactly: anchors, aliases, tags and merge keys (the alias budget and the tag checks live there), several documents,
a scalar document, duplicate keys, nesting deeper than the JSON emitter's 64 levels, a plain scalar that reads as a
non-finite number or a plain key that reads as something other than its text, and every syntax error (the event
composer reports it, at libyaml's line and column, in the words the rest of the package expects). What is left is
what large registries are made of: mappings, lists, plain and quoted scalars, block scalars.

After the C parts, one pass in Python over the values looks closer only at strings whose first character could
start a number, a boolean, a null or a date (``yes``, ``~``, ``0x1F``, ``2026-12-03``: YAML 1.1, as PyYAML reads
them) or that hold ``${``. benchmarks/hardening.py times it beside the event composer on 10 MB of registry.
"""

from __future__ import annotations

import bisect
import ctypes
import gc
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

try:  # an optional accelerator: without it every file takes the event composer
    import ryml
except ImportError:  # pragma: no cover - rapidyaml is a dependency; a platform without a wheel still works
    ryml = None

__all__ = ["FAST_MIN_CHARS", "available", "compose_fast"]

FAST_MIN_CHARS = 512 * 1024
"""Files shorter than this take the event composer (about 0.2 s for this size): the fast reader pays off on large
files, and small ones keep the one reader every message was written against."""

Path_ = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_RESOLVERS = yaml.SafeLoader.yaml_implicit_resolvers
_CONSTRUCTOR = yaml.SafeLoader("")
# the first characters of text PyYAML may read as something other than a string, and of text libyaml refuses plain
# (rapidyaml accepts a plain scalar that starts with a reserved indicator)
_REFUSED_FIRST = "@`%,]}"
_SPECIAL_FIRST = frozenset(_RESOLVERS) | frozenset(_REFUSED_FIRST)


class _Decline(Exception):
    """This file is for the event composer."""


def available() -> bool:
    return ryml is not None


def plain_tag(text: str, cache: dict[str, str]) -> str:
    """The tag of ``text`` written as a plain scalar (``5`` -> int, ``true`` -> bool, ``x`` -> str), as PyYAML's
    safe resolver gives it, cached by text; both YAML readers ask this."""
    tag = cache.get(text)
    if tag is None:
        if text and text[0] not in _RESOLVERS:  # no implicit type starts with this character
            tag = _STR
        else:
            tag = _CONSTRUCTOR.resolve(yaml.ScalarNode, text, (True, False))
        if len(text) <= 64:
            cache[text] = tag
    return tag


def _construct(tag: str, text: str) -> Any:
    """``text`` built as PyYAML's safe loader builds a plain scalar of ``tag``; a tag without a constructor
    ("<<", "=") or a number that is not finite is the event composer's to report."""
    constructor = _CONSTRUCTOR.yaml_constructors.get(tag)
    if tag == _STR or constructor is None:
        raise _Decline
    value = constructor(_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    if isinstance(value, float) and not math.isfinite(value):
        raise _Decline
    return value


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]


def _address(view: memoryview) -> int | None:
    """Where a (read-only) memoryview's bytes start in memory; None for an empty view without an address."""
    buf = _PyBuffer()
    _get_buffer(view, ctypes.byref(buf), 0)
    try:
        return buf.buf or None
    finally:
        _release_buffer(ctypes.byref(buf))


class _Tree:
    """The parsed tree, the buffer it points into and the original bytes; positions by node, lazily."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.buf = bytearray(raw)  # parsed in place: the tree's scalars point into it
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))
        self.tree = _parse_quietly(self.buf)
        self._lines: list[int] | None = None  # offsets of the line starts, built at the first position asked
        self._children: dict[int, list[int]] = {}  # child ids of the large collections looked into

    def _offset(self, view: memoryview) -> int | None:
        """The offset of a scalar in the file; None for an empty one, or one rapidyaml rewrote into its arena (an
        escape whose character is longer than the escape itself)."""
        address = _address(view)
        if address is None or not 0 <= address - self.base <= len(self.raw):
            return None
        return address - self.base

    def _line_col(self, offset: int) -> tuple[int, int]:
        if self._lines is None:
            self._lines = [0, *(m.end() for m in re.finditer(b"\n", self.raw))]
        line = bisect.bisect_right(self._lines, offset)
        start = self._lines[line - 1]
        return line, len(self.raw[start:offset].decode("utf-8", "replace")) + 1

    def _child_ids(self, node: int) -> list[int]:
        ids = self._children.get(node)
        if ids is None:
            t, ids, child = self.tree, [], self.tree.first_child(node)
            while child != ryml.NONE:
                ids.append(child)
                child = t.next_sibling(child)
            self._children[node] = ids
        return ids

    def _back_to(self, offset: int, marks: bytes) -> int:
        """The offset of the indicator (``-``, ``[``, ``{``, ``|``, ``>``) that opens what starts at ``offset``:
        the nearest of ``marks`` before it, across blanks and line breaks only; ``offset`` itself if none."""
        raw, i = self.raw, offset - 1
        while i >= 0 and raw[i] in b" \t\r\n":
            i -= 1
        return i if i >= 0 and raw[i] in marks else offset

    def key_offset(self, node: int) -> int | None:
        t = self.tree
        if not t.has_key(node):
            return None
        offset = self._offset(t.key(node))
        if offset is not None and t.is_key_quoted(node):
            offset -= 1
        return offset

    def value_offset(self, node: int) -> int | None:
        """Where libyaml's mark of this node's value is: a scalar's first character (its quote, its ``|``), a
        flow collection's bracket, a block sequence's first ``-``, a block mapping's first key (or its ``?``)."""
        t = self.tree
        if t.is_container(node):
            first = t.first_child(node)
            if first == ryml.NONE:  # an empty collection is a flow one: its bracket is the next one after
                after = self._end_before(node)
                opening = b"[" if t.is_seq(node) else b"{"
                found = self.raw.find(opening, after)
                return found if found >= 0 else None
            inner = self.key_offset(first) if t.is_map(node) else None
            if inner is None:
                inner = self.value_offset(first)
            if inner is None:
                return None
            if t.is_flow(node):
                return self._back_to(inner, b"[{")
            return self._back_to(inner, b"-" if t.is_seq(node) else b"?")
        view = t.val(node)
        offset = None if view is None else self._offset(view)
        if offset is None or (not len(view) and t.is_val_plain(node)):
            return self._empty_offset(node)
        if t.type_has_any(node, ryml.VAL_LITERAL | ryml.VAL_FOLDED):
            return self._block_indicator(node, offset)
        if t.is_val_quoted(node):
            return offset - 1
        return offset

    def _empty_offset(self, node: int) -> int | None:
        """libyaml's mark of an empty value (``g:``, ``- ``, ``{b: }``): just past its ``:`` or ``-`` in a block
        collection, at the next token in a flow one."""
        t, raw = self.tree, self.raw
        flow = t.has_parent(node) and t.is_flow(t.parent(node))
        i = self._end_before(node)
        n = len(raw)
        if not t.has_key(node) and not flow:  # a block sequence's "-": past the parent's ":" and line breaks
            dash = raw.find(b"-", i)
            return dash + 1 if dash >= 0 else None
        while i < n and raw[i] in b" \r\n":
            i += 1
        if i < n and raw[i] in (b":" if t.has_key(node) else b"-"):
            i += 1
            if flow:
                while i < n and raw[i] in b" \r\n":
                    i += 1
        return i

    def _end_before(self, node: int) -> int:
        """The offset just past the last key or scalar written before ``node`` (node ids run in document
        order), or past ``node``'s own key."""
        t = self.tree
        for i in range(node, -1, -1):
            if i < node and t.is_container(i) and not t.has_children(i):  # "[]" or "{}": past its closing bracket
                opening = self.value_offset(i)
                if opening is not None:
                    close = self.raw.find(b"]" if t.is_seq(i) else b"}", opening)
                    return close + 1 if close >= 0 else opening + 1
            ends = []
            for has, get, own in ((t.has_key, t.key, True), (t.has_val, t.val, False)):
                if has(i) and (i < node or own):
                    view = get(i)
                    offset = None if view is None else self._offset(view)
                    if offset is not None:
                        quoted = t.is_key_quoted(i) if own else t.is_val_quoted(i)
                        ends.append(offset + len(view) + (1 if quoted else 0))
            if ends:
                return max(ends)
        return 0

    def _block_indicator(self, node: int, offset: int) -> int:
        """A block scalar's ``|`` or ``>``: the last one between its key (or the line start) and its text."""
        start = self.key_offset(node)
        start = 0 if start is None else start
        found = max(self.raw.rfind(b"|", start, offset), self.raw.rfind(b">", start, offset))
        return found if found >= 0 else offset

    def position(self, offset: int | None) -> tuple[int, int] | None:
        return None if offset is None else self._line_col(offset)

    def find(self, root: int, path: Path_) -> int | None:
        """The node at ``path`` under ``root``, or None."""
        t, node = self.tree, root
        for part in path:
            if t.is_map(node) and isinstance(part, str):
                want = part.encode()
                for child in self._child_ids(node):
                    if bytes(t.key(child)) == want:
                        break
                else:
                    return None
            elif t.is_seq(node) and isinstance(part, int):
                ids = self._child_ids(node)
                if not 0 <= part < len(ids):
                    return None
                child = ids[part]
            else:
                return None
            node = child
        return node


class TreePositions(Mapping[Path_, tuple[int, int]]):
    """Positions by path, found in the tree when asked (an error needs a few; a million are never built)."""

    def __init__(self, tree: _Tree, root: int, *, keys: bool, plain_vars: frozenset[Path_] = frozenset()) -> None:
        self._tree, self._root, self._keys, self._plain = tree, root, keys, plain_vars

    def _lookup(self, path: Path_) -> tuple[int, int] | None:
        if path and path[-1] == "\0plain":  # the event composer's mark of an unquoted "${...}"
            return (0, 0) if path[:-1] in self._plain else None
        node = self._tree.find(self._root, path)
        if node is None:
            return None
        if self._keys:
            return self._tree.position(self._tree.key_offset(node))
        return self._tree.position(self._tree.value_offset(node))

    def __getitem__(self, path: Path_) -> tuple[int, int]:
        found = self._lookup(tuple(path))
        if found is None:
            raise KeyError(path)
        return found

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and self._lookup(path) is not None

    def __iter__(self) -> Iterator[Path_]:
        raise TypeError("positions of the fast YAML reader are looked up by path, never listed")

    def __len__(self) -> int:
        raise TypeError("positions of the fast YAML reader are looked up by path, never counted")


def _parse_quietly(buf: bytearray) -> Any:
    """Parse with rapidyaml, whose error handler also prints to the process's stderr (C++ file names and all):
    that print is caught and dropped; anything else written to stderr meanwhile is passed on."""
    tree = ryml.Tree()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to guard
        try:
            ryml.parse_in_place(buf, tree)
        except Exception:  # noqa: BLE001 - the event composer reports the error
            raise _Decline from None
        return tree
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = False
        try:
            ryml.parse_in_place(buf, tree)
        except Exception:  # noqa: BLE001 - ryml's ExceptionParse and friends: the event composer reports the error
            failed = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        text = caught.read()
    if failed:
        lines = text.splitlines(keepends=True)
        text = b"".join(x for x in lines if not (x.startswith(b"line=") or x.rstrip().endswith(b"(detected here)")))
    if text:
        os.write(2, text)
    if failed:
        raise _Decline
    return tree


def _json_number(tags: dict[str, str]) -> Any:
    """A JSON number as PyYAML reads the same plain text (rapidyaml writes ``1e3`` bare; YAML 1.1 reads a string)."""

    def read(text: str) -> Any:
        tag = plain_tag(text, tags)
        return text if tag == _STR else _construct(tag, text)

    return read


def _no_constant(name: str) -> Any:
    raise _Decline  # NaN or Infinity: the event composer words the error


class _Walker:
    """One pass over the loaded values in document order, which is the order of the tree's node ids: a string that
    PyYAML could read as something else is looked up in the tree (was it written plain?), and so is one holding
    ``${`` (the event composer marks an unquoted one)."""

    def __init__(self, tree: Any, tags: dict[str, str]) -> None:
        self.tree, self.tags = tree, tags
        self.plain_vars: set[Path_] = set()
        self.plain_keys: set[str] = set()
        """Keys seen to read as themselves, written plain or quoted: most keys repeat in every entry."""

    def typed(self, text: str, node: int) -> Any:
        """A string value ``text`` at ``node`` as PyYAML reads it: itself unless it was written plain and reads
        as something else (a reserved indicator written plain is libyaml's error: declined)."""
        tag = plain_tag(text, self.tags)
        if (tag == _STR and text[0] not in _REFUSED_FIRST) or not self.tree.is_val_plain(node):
            return text
        return _construct(tag, text)

    def key(self, text: str, node: int) -> None:
        if text and text[0] in _SPECIAL_FIRST:
            tag = plain_tag(text, self.tags)
            if tag != _STR or text[0] in _REFUSED_FIRST:  # what it reads as depends on how it was written
                if self.tree.is_key_plain(node) and str(_construct(tag, text)) != text:
                    raise _Decline  # the event composer keys by str(value): "yes" becomes "True"
                return
        self.plain_keys.add(text)

    def walk(self, value: Any, path: Path_, node: int) -> int:
        """Check (and retype) what ``value``, the node ``node``, holds; returns the id of its last node."""
        walk, typed, special, seen = self.walk, self.typed, _SPECIAL_FIRST, self.plain_keys
        items = value.items() if type(value) is dict else enumerate(value)
        is_map = type(value) is dict
        for k, v in items:
            node += 1
            if is_map and k not in seen:
                self.key(k, node)
            tv = type(v)
            if tv is str:
                if v and v[0] in special:
                    new = typed(v, node)
                    if new is not v:
                        value[k] = new
                        continue
                if "${" in v and self.tree.is_val_plain(node):
                    self.plain_vars.add((*path, k))
            elif tv is dict or tv is list:
                node = walk(v, (*path, k), node)
        return node


def compose_fast(text: str) -> tuple[Any, TreePositions, TreePositions] | None:
    """(value, positions of values, positions of keys) as :func:`._yaml_compose.compose` gives them, or None
    where this reader declines the file (see the module's docstring)."""
    if ryml is None:
        return None
    collecting = gc.isenabled()
    gc.disable()  # half a million new containers, none of them garbage: the cyclic collector would rescan them
    try:
        return _compose(text)
    except (_Decline, RecursionError, ValueError):  # ValueError: JSON rapidyaml wrote that json refuses (+5)
        return None
    except Exception as e:  # rapidyaml's own exceptions (its emitter's depth limit): the event composer decides
        if isinstance(e, ryml.ExceptionBasic):
            return None
        raise
    finally:
        if collecting:
            gc.enable()


def _compose(text: str) -> tuple[Any, TreePositions, TreePositions]:
    raw = text.encode("utf-8")
    if raw.startswith(b"\xef\xbb\xbf"):  # libyaml's columns start after a byte-order mark
        raise _Decline
    if b"\t" in raw:  # a tab is white space to libyaml in more places than to rapidyaml ("a:<tab>b")
        raise _Decline
    tree = _Tree(raw)
    t = tree.tree
    if not t.size():
        raise _Decline
    root = t.root_id()
    if t.is_stream(root):
        if t.num_children(root) != 1:
            raise _Decline
        root = t.first_child(root)
    if not t.is_container(root):
        raise _Decline
    if b"&" in raw or b"*" in raw or b"!" in raw:  # maybe an anchor, an alias or a tag: look at every node
        has = t.type_has_any
        special = ryml.KEYREF | ryml.VALREF | ryml.KEYANCH | ryml.VALANCH | ryml.KEYTAG | ryml.VALTAG
        if any(has(i, special) for i in range(t.size())):
            raise _Decline
    emitted = ryml.emit_json(t, root) if t.is_stream(t.root_id()) else ryml.emit_json(t)
    tags: dict[str, str] = {}
    number = _json_number(tags)
    value = json.loads(emitted, parse_float=number, parse_int=number, parse_constant=_no_constant)
    walker = _Walker(t, tags)
    last = walker.walk(value, (), root)
    # every node of the tree was one value: fewer values means keys that repeat (the event composer's error)
    if last != t.size() - 1:
        raise _Decline
    plain = frozenset(walker.plain_vars)
    return value, TreePositions(tree, root, keys=False, plain_vars=plain), TreePositions(tree, root, keys=True)
