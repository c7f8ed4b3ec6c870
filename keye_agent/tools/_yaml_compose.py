"""YAML text to plain Python values and their positions, in one pass over the parser's events, with limits.

PyYAML's own composer builds a node tree, then a second tree of values, and expands every alias into a copy: a
446-byte file of 9 anchors of 9 aliases each (a "billion laughs") becomes 9**9 nodes, and a 10 MB file takes
seconds per megabyte in the pure-Python loader. Here libyaml's events (the C parser when PyYAML has it) become
values directly, without recursion:

* an alias shares the anchored value (no copy) and costs as many nodes as the anchor holds; aliases may add at most
  :data:`ALIAS_BUDGET` nodes beyond those written in the file, so expansion is at most linear in the input;
* nesting past :data:`MAX_DEPTH` levels stops at once (later passes recurse, and registries are shallow);
* only the standard tags of the YAML 1.1 core schema are read (PyYAML's safe loader), never an application tag.

Every error is a :class:`~keye_agent.errors.ConfigError` at its file, line and column.

A file of :data:`._yaml_fast.FAST_MIN_CHARS` or more goes to the fast reader of :mod:`._yaml_fast` first (values
built in C, positions looked up only when asked); whatever it declines (anchors, tags, errors...) comes here.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Mapping
from typing import Any

import yaml

from keye_agent.errors import ConfigError

from ._yaml_fast import FAST_MIN_CHARS, compose_fast, plain_tag

__all__ = ["ALIAS_BUDGET", "MAX_DEPTH", "compose"]

MAX_DEPTH = 100
ALIAS_BUDGET = 100_000

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")

Path_ = tuple[str | int, ...]
Positions = Mapping[Path_, tuple[int, int]]


class _Anchor:
    __slots__ = ("entries", "value")

    def __init__(self, value: Any, entries: list[tuple[Path_, tuple[int, int], bool]]) -> None:
        self.value, self.entries = value, entries


class _Frame:
    """An open mapping or sequence."""

    __slots__ = ("anchor", "explicit", "is_map", "key", "key_path", "key_pos", "log_start", "merges", "path", "pos",
                 "value")

    def __init__(self, is_map: bool, path: Path_, pos: tuple[int, int], anchor: str | None, log_start: int) -> None:
        self.is_map, self.path, self.pos, self.anchor, self.log_start = is_map, path, pos, anchor, log_start
        self.value: Any = {} if is_map else []
        self.key: Any = None  # a mapping's pending key (None: a key comes next); _MERGE for "<<"
        self.key_pos = (0, 0)
        self.key_path: Path_ = ()  # (*path, key) of the pending key, built once for the key and its value
        self.merges: list[Any] = []


def _pos(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return mark.line + 1, mark.column + 1


class _Composer:
    def __init__(self, loader: yaml.SafeLoader, file: str, values: dict[Path_, tuple[int, int]],
                 keys: dict[Path_, tuple[int, int]]) -> None:
        self.loader, self.file, self.values, self.keys = loader, file, values, keys
        self.anchors: dict[str, _Anchor] = {}
        self.log: list[tuple[Path_, tuple[int, int], bool]] = []  # positions written while an anchor is open
        self.open_anchors = 0
        self.aliased = 0  # nodes aliases added
        self._tags: dict[str, str] = {}

    def error(self, message: str, pos: tuple[int, int], hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=pos[0], column=pos[1], hint=hint)

    def _record(self, path: Path_, pos: tuple[int, int], key: bool = False) -> None:
        (self.keys if key else self.values)[path] = pos
        if self.open_anchors:
            self.log.append((path, pos, key))

    def document(self) -> Any:
        """The one document of the stream (None for an empty one)."""
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        value = self._node()
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            raise self.error("the file holds more than one YAML document ('---')", _pos(loader.peek_event()),
                             hint="a registry is one document; remove the second '---' or split the file")
        return value

    def _plain_tag(self, value: str) -> str:
        return plain_tag(value, self._tags)

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:  # quoted or block: a string
                return event.value
            tag = self._plain_tag(event.value)
        if tag == _STR:
            return event.value
        constructor = self.loader.yaml_constructors.get(tag)
        if constructor is None:
            raise self.error(f"unsupported YAML tag {tag!r}", _pos(event),
                             hint="registry files use plain YAML values; remove the tag")
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        value = constructor(self.loader, node)
        if isinstance(value, float) and not math.isfinite(value):
            # no timeout, bound or count is NaN or infinite, and JSON (what the model is sent) has neither
            raise self.error(f"{event.value} is not a finite number", _pos(event),
                             hint="give a number; leave the key out for the default")
        return value

    def _node(self) -> Any:
        """Read one node (with everything inside it) from the events, iteratively. The common event (a plain
        or quoted scalar in a mapping or a list, no anchor, no tag) takes the short path at the top of the loop."""
        get_event = self.loader.get_event
        values, keys, log = self.values, self.keys, self.log
        tags = self._tags
        scalar_event = yaml.ScalarEvent
        stack: list[_Frame] = []
        top: _Frame | None = None
        while True:
            event = get_event()
            if type(event) is scalar_event and top is not None and event.tag is None and event.anchor is None:
                text = event.value
                if top.is_map and top.key is None:  # a key
                    if event.implicit[0] and (text == "<<" or (tags.get(text) or self._plain_tag(text)) != _STR):
                        self._key(top, event)  # a merge key, or a key that reads as a number or a boolean
                        continue
                    if text in top.value:
                        self._key(top, event)  # the duplicate-key error
                    mark = event.start_mark
                    path = (*top.path, text)
                    keys[path] = pos = (mark.line + 1, mark.column + 1)
                    if self.open_anchors:
                        log.append((path, pos, True))
                    top.key, top.key_path = text, path
                    continue
                if top.key is not _MERGE:  # a value
                    value = text
                    if event.implicit[0] and (tags.get(text) or self._plain_tag(text)) != _STR:
                        value = self._scalar(event)
                    mark = event.start_mark
                    if top.is_map:
                        path = top.key_path
                        top.value[top.key] = value
                        top.key = None
                    else:
                        path = (*top.path, len(top.value))
                        top.value.append(value)
                    values[path] = pos = (mark.line + 1, mark.column + 1)
                    if self.open_anchors:
                        log.append((path, pos, False))
                    if "${" in text and not event.style and isinstance(value, str):  # plain: None, or "" (C)
                        # an unquoted ${X} may stand for a number or a boolean once expanded
                        values[(*path, "\0plain")] = (0, 0)
                    continue
            if top is not None and (isinstance(event, yaml.MappingEndEvent) or isinstance(event, yaml.SequenceEndEvent)):
                stack.pop()
                value = self._close(top)
                if not stack:
                    return value
                top = stack[-1]
                self._place(top, value)
                continue
            if top is not None and top.is_map and top.key is None:
                self._key(top, event)
                continue
            path, merge = self._slot(top)
            pos = _pos(event)
            if isinstance(event, yaml.AliasEvent):
                value = self._alias(event, path, pos, merge)
            elif isinstance(event, yaml.ScalarEvent):
                value = self._scalar(event)
                if not merge:
                    self._record(path, pos)
                    if not event.style and isinstance(value, str) and "${" in value:
                        self.values[(*path, "\0plain")] = (0, 0)
                if event.anchor:
                    self.anchors[event.anchor] = _Anchor(value, [((), pos, False)])
            else:
                is_map = isinstance(event, yaml.MappingStartEvent)
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise self.error(f"unsupported YAML tag {event.tag!r}", pos,
                                     hint="registry files use plain YAML values; remove the tag")
                if len(stack) >= MAX_DEPTH:
                    raise self.error(f"values nested more than {MAX_DEPTH} levels deep", pos,
                                     hint="a registry is a few levels deep; flatten this value")
                if event.anchor:
                    self.open_anchors += 1
                frame = _Frame(is_map, path, pos, event.anchor, len(self.log))
                if merge and not is_map:
                    frame.key = _MERGE  # "<<: [*a, *b]": each item merges into the mapping
                if not merge:
                    self._record(path, pos)
                stack.append(frame)
                top = frame
                continue
            if top is None:
                return value
            self._place(top, value)

    def _slot(self, top: _Frame | None) -> tuple[Path_, bool]:
        """(the path of the next value in ``top``, whether it is the value of a merge key "<<")."""
        if top is None:
            return (), False
        if top.is_map:
            # a merge's value is read at the mapping's own path: its keys become the mapping's keys
            return (top.path, True) if top.key is _MERGE else ((*top.path, top.key), False)
        if top.key is _MERGE:  # a list of mappings to merge
            return top.path, True
        return (*top.path, len(top.value)), False

    def _key(self, frame: _Frame, event: Any) -> None:
        pos = _pos(event)
        if not isinstance(event, yaml.ScalarEvent):
            raise self.error("a mapping key must be a plain value, not a mapping, list or alias", pos,
                             hint="write the key as text: name: value")
        if event.implicit[0] and event.tag is None and event.value == "<<":
            frame.key = _MERGE
            return
        key = self._scalar(event)
        key = key if isinstance(key, str) else str(key)
        if key in frame.value:
            first = self.keys.get((*frame.path, key))
            where = f" (first at line {first[0]})" if first else ""
            raise self.error(f"duplicate key {key!r}{where}", pos,
                             hint="a key may appear once per mapping; merge the two entries")
        frame.key, frame.key_pos, frame.key_path = key, pos, (*frame.path, key)
        self._record((*frame.path, key), pos, key=True)

    def _place(self, frame: _Frame, value: Any) -> None:
        if not frame.is_map:
            frame.value.append(value)
            return
        if frame.key is _MERGE:
            frame.merges.append((value, frame.key_pos))
        else:
            frame.value[frame.key] = value
        frame.key = None

    def _close(self, frame: _Frame) -> Any:
        value = frame.value
        if frame.is_map and frame.merges:
            merged: dict[str, Any] = {}
            for source, _ in frame.merges:
                sources = source if isinstance(source, list) else [source]
                if not all(isinstance(s, dict) for s in sources):
                    raise self.error("'<<' merges a mapping or a list of mappings", frame.pos,
                                     hint="write <<: *anchor where the anchor is a mapping")
                for s in reversed(sources):  # the first mapping listed wins, as in PyYAML
                    merged.update(s)
            value = frame.value = {**merged, **value}
        if frame.anchor:
            entries = [(p[len(frame.path):], pos, key) for p, pos, key in self.log[frame.log_start:]]
            self.anchors[frame.anchor] = _Anchor(value, entries)
            self.open_anchors -= 1
            if not self.open_anchors:
                self.log.clear()
        return value

    def _alias(self, event: Any, path: Path_, pos: tuple[int, int], merge: bool) -> Any:
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            raise self.error(f"the alias *{event.anchor} names no anchor before it", pos,
                             hint=f"define &{event.anchor} on a value above this line")
        written = len(self.values) + len(self.keys) - self.aliased  # nodes written in the file so far
        self.aliased += len(anchor.entries)
        if self.aliased > ALIAS_BUDGET + written:
            raise self.error(
                f"aliases expand to more than {ALIAS_BUDGET:,} nodes beyond the {written:,} written so far "
                f"(at *{event.anchor}); an alias bomb?", pos,
                hint="share settings with defaults: and include: rather than anchors of anchors")
        for rel, where, key in anchor.entries:
            if rel or not merge:
                self._record((*path, *rel), pos if not rel else where, key)
        return anchor.value


def compose(text: str, file: str, *, fast: bool | None = None) -> tuple[Any, Positions, Positions]:
    """(the value of the one document in ``text``, positions of values, positions of mapping keys); positions
    are (line, column), 1-based, by path. Raises ConfigError for a YAML error or a limit passed.

    ``fast``: try the fast reader first (None: for a text of :data:`FAST_MIN_CHARS` or more); False: never."""
    if fast or (fast is None and len(text) >= FAST_MIN_CHARS):
        found = compose_fast(text)
        if found is not None:
            return found
    values: dict[Path_, tuple[int, int]] = {}
    keys: dict[Path_, tuple[int, int]] = {}
    loader = _Loader(text)
    collecting = gc.isenabled()
    gc.disable()  # a million new containers, none of them garbage: the cyclic collector would rescan them all
    try:
        value = _Composer(loader, file, values, keys).document()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(
            f"YAML syntax error: {what}", file=file,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
            hint="check the indentation (spaces, not tabs) and the quoting on this line",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"YAML error: {e}", file=file) from None
    finally:
        if collecting:
            gc.enable()
        loader.dispose()
    return value, values, keys
