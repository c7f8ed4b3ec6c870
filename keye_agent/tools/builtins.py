"""Built-in tools, found through the entry-point group ``keye_agent.tools``.

Each entry point names a factory ``make_<name>(**options) -> Tool``. Other parts of keye-agent (the sandbox's
``run_code``, search's ``web_search`` and ``fetch_url``) and third-party packages register theirs there, so this
package never imports them.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from importlib.metadata import entry_points
from typing import Any

import pydantic

from keye_agent.errors import ConfigError

from .base import Tool

GROUP = "keye_agent.tools"


def available_builtins() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_builtin(name: str, **options: Any) -> Tool:
    """Build the built-in tool ``name`` with ``options`` (e.g. ``load_builtin("run_code", timeout_s=30)``)."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        close = difflib.get_close_matches(name, list(eps), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "install the extra that provides it (e.g. keye-agent[all])"
        raise ConfigError(
            f"no built-in tool named {name!r}; available: {', '.join(sorted(eps)) or 'none'}", hint=hint
        )
    try:
        factory = eps[name].load()
    except ImportError as e:
        raise ConfigError(
            f"built-in tool {name!r} cannot be loaded: {e}", hint="install the extra that provides it (keye-agent[all])"
        ) from e
    options = _check_options(name, factory, options)
    try:
        made = factory(**options)
    except (TypeError, ValueError) as e:  # a factory's own check of a value (a range, a combination)
        raise ConfigError(f"built-in tool {name!r}: bad options {sorted(options)}: {e}",
                          hint=f"its options: {_option_names(factory)}") from None
    if not isinstance(made, Tool):
        raise ConfigError(f"entry point {name!r} returned {type(made).__name__}, not a Tool")
    return made


def _option_names(factory: Any) -> str:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return "(unknown)"
    return ", ".join(p for p in params if not p.startswith("_")) or "none"


def _check_options(name: str, factory: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Each option checked against the factory's signature and type hints (a YAML ``options:`` mapping is
    untyped), so a misspelt option or a string where a number belongs is a ConfigError naming it, not a TypeError
    from inside; returns the options as the hints read them ("10" -> 10 for an int)."""
    try:
        params = inspect.signature(factory).parameters
        hints = typing.get_type_hints(factory)
    except (TypeError, ValueError, NameError):
        return options
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values()):
        return options
    fields = {n: (hints.get(n, Any), ... if p.default is p.empty else p.default) for n, p in params.items()}
    try:
        model = pydantic.create_model(  # type: ignore[call-overload]
            f"{name}_options", __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
        return options  # hints pydantic cannot check; the factory checks what it gets
    try:
        checked = model.model_validate(options)
    except TypeError:  # a hint that cannot check instances (a Protocol not runtime-checkable): the factory decides
        return options
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'options'}: "
            + ("not an option of this tool" if err["type"] == "extra_forbidden" else err["msg"])
            for err in e.errors(include_url=False)[:5])
        raise ConfigError(f"built-in tool {name!r}: bad option(s): {problems}",
                          hint=f"its options: {_option_names(factory)}") from None
    return {k: getattr(checked, k) for k in options}
