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

__all__ = ["SourceMap", "expand_env", "read_yaml"]

Path_ = tuple[str | int, ...]

# ${NAME} or ${NAME:-default}; "$${" is a literal "${"
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_BODY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


@dataclass
class SourceMap:
    """Where each value (and each mapping key) sits in the file: path -> (line, column), both 1-based."""

    file: str
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

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


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path`` into plain Python values and a :class:`SourceMap`; duplicate keys are an error."""
    smap = SourceMap(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"registry file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read registry file {path}: {e}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError("the file is empty; expected a mapping with a 'tools' list", file=str(path), line=1,
                              column=1)
        data = _convert(root, (), smap, loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(
            f"YAML syntax error: {what}", file=str(path),
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
            hint="check the indentation (spaces, not tabs) and the quoting on this line",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"YAML error: {e}", file=str(path)) from None
    finally:
        loader.dispose()
    return data, smap


def _convert(node: yaml.Node, path: Path_, smap: SourceMap, loader: yaml.SafeLoader) -> Any:
    smap.values[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        loader.flatten_mapping(node)  # resolves "<<: *anchor" merges
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                first = smap.keys.get((*path, key))
                where = f" (first at line {first[0]})" if first else ""
                line, col = _pos(knode)
                raise ConfigError(f"duplicate key {key!r}{where}", file=smap.file, line=line, column=col,
                                  hint="a key may appear once per mapping; merge the two entries")
            smap.keys[(*path, key)] = _pos(knode)
            out[key] = _convert(vnode, (*path, key), smap, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), smap, loader) for i, v in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(node, yaml.ScalarNode) and node.style is None and isinstance(value, str) and "${" in value:
        # remember that an unquoted ${X} may stand for a number or a boolean once expanded
        smap.values[(*path, "\0plain")] = (0, 0)
    return value


def expand_env(
    data: Any, smap: SourceMap, *, env: Mapping[str, str] | None = None, secret_names: frozenset[str] = frozenset(),
    is_secret_path: Callable[[Path_], bool] = lambda p: False, path: Path_ = (),
) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string. A missing variable without a default is an error
    at its position. Values of secret-looking variables, of those listed in ``secret_names``, and of any variable used
    where ``is_secret_path`` says (auth, headers) are registered as secrets, so they are redacted everywhere."""
    env = os.environ if env is None else env
    if isinstance(data, dict):
        return {k: expand_env(v, smap, env=env, secret_names=secret_names, is_secret_path=is_secret_path,
                              path=(*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, smap, env=env, secret_names=secret_names, is_secret_path=is_secret_path,
                           path=(*path, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

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
