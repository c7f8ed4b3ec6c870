"""Reading a YAML registry file with the line and column of every value, and ``${ENV_VAR}`` substitution.

Errors found later (schema violations, unknown names) point back into the file through :class:`SourceMap`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keye_agent.errors import ConfigError, is_secret_name, register_secret

from ._yaml_compose import compose

__all__ = ["MAX_FILE_BYTES", "SourceMap", "expand_env", "read_yaml"]

Path_ = tuple[str | int, ...]

# ${NAME} or ${NAME:-default}; "$${" is a literal "${"
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_BODY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


@dataclass
class SourceMap:
    """Where each value (and each mapping key) sits in the file: path -> (line, column), both 1-based."""

    file: str
    values: Mapping[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: Mapping[Path_, tuple[int, int]] = field(default_factory=dict)
    has_variables: bool = True
    """Whether the file's text holds ``${`` at all; without it :func:`expand_env` has nothing to walk."""

    def at(self, path: Path_, *, key: bool = False) -> tuple[int | None, int | None]:
        """The position of ``path`` (its key when ``key``), or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        p = tuple(path)
        while True:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return None, None
            p = p[:-1]

    def error(self, message: str, path: Path_ = (), *, key: bool = False, hint: str | None = None) -> ConfigError:
        line, col = self.at(path, key=key)
        return ConfigError(message, file=self.file, line=line, column=col, hint=hint)


MAX_FILE_BYTES = 16 * 2**20


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"registry file {path} is {size:,} bytes; the most a registry file may hold is "
                              f"{MAX_FILE_BYTES:,}", hint="split it into files joined with include:")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"registry file not found: {path}") from None
    except OSError as e:  # a directory, a symlink loop, no permission
        raise ConfigError(f"cannot read registry file {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        column = len(data[start:e.start].decode("utf-8", "replace")) + 1
        raise ConfigError(f"byte 0x{data[e.start]:02x} is not UTF-8 ({e.reason})", file=str(path), line=line,
                          column=column, hint="save the file as UTF-8") from None


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path`` into plain Python values and a :class:`SourceMap`; duplicate keys are an error, and so are
    the limits of :mod:`._yaml_compose` (alias expansion, nesting) and :data:`MAX_FILE_BYTES`."""
    text = _read_text(path)
    data, values, keys = compose(text, str(path))
    if data is None:
        raise ConfigError("the file is empty; expected a mapping with a 'tools' list", file=str(path), line=1,
                          column=1)
    return data, SourceMap(str(path), values, keys, has_variables="${" in text)


def expand_env(
    data: Any, smap: SourceMap, *, env: Mapping[str, str] | None = None, secret_names: frozenset[str] = frozenset(),
    is_secret_path: Callable[[Path_], bool] = lambda p: False, path: Path_ = (),
) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string. A missing variable without a default is an error
    at its position. Values of secret-looking variables, of those listed in ``secret_names``, and of any variable used
    where ``is_secret_path`` says (auth, headers) are registered as secrets, so they are redacted everywhere."""
    env = os.environ if env is None else env
    if not smap.has_variables:
        return data

    def walk(node: Any, at: Path_) -> Any:
        # only containers and strings holding "${" cost a call: a 10 MB file has a million plain values
        if isinstance(node, dict):
            return {k: (walk(v, (*at, k)) if isinstance(v, dict | list) or (type(v) is str and "${" in v) else v)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*at, i)) if isinstance(v, dict | list) or (type(v) is str and "${" in v) else v
                    for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return _expand_one(node, smap, env, secret_names, is_secret_path, at)
        return node

    return walk(data, path)


def _expand_one(data: str, smap: SourceMap, env: Mapping[str, str], secret_names: frozenset[str],
                is_secret_path: Callable[[Path_], bool], path: Path_) -> Any:

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        body = _ENV_BODY.match(m.group(1))
        if not body:
            raise smap.error(
                f"malformed variable reference {m.group(0)!r}",
                path, hint="write ${NAME} or ${NAME:-default}; NAME is letters, digits and '_' (write $${ for a literal ${)",
            )
        name, default = body.group(1), body.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise smap.error(
                    f"environment variable {name} is not set",
                    path, hint=f"export {name}=... before loading, or give a default: ${{{name}:-value}}",
                )
            value = default
        elif name in secret_names or is_secret_name(name) or is_secret_path(path):
            register_secret(value)
        return value

    if re.search(r"\$\{[^}]*$", data.replace("$${", "")):
        raise smap.error(f"unclosed variable reference in {data!r}", path, hint="close it with '}': ${NAME}")
    expanded = _ENV.sub(sub, data)
    if (*path, "\0plain") in smap.values and _ENV.fullmatch(data):
        # an unquoted "${T:-5}" for a number field reads as the number 5, as if written plainly
        try:
            typed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        if isinstance(typed, bool | int | float) :
            return typed
    return expanded
