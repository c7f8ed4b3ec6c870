"""tau2-bench's domains (``mock``, ``airline``, ``retail``) with our toolkits over their data files.

The data ship with the package (``tau2_data/``, MIT, see its NOTICE.md); ``--tau2-data PATH`` or $KEYE_TAU2_DATA
points at another copy (a tau2-bench checkout or its data folder). Each environment gets its own database,
validated afresh from the file's data, which is parsed once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from keye_agent.errors import ConfigError

from ..domain import TAU2_DATA_ENV, Domain, _read_json, _tasks_and_splits, data_file, tau2_data_dir
from ..environment import Environment
from ..lazydb import LazyBase, LazyDB
from ..toolkit import Toolkit

BUNDLED = Path(__file__).resolve().parent / "tau2_data"
"""The copy of tau2-bench's data shipped with the package."""


@dataclass(frozen=True)
class Tau2Spec:
    """How one tau2 domain is built: its toolkits and database models (imported on use)."""

    toolkits: Callable[[], tuple[type[Toolkit], type, type[Toolkit] | None, type | None]]
    user_db_default: dict[str, Any] | None = None
    lazy: bool = False
    """The database is large: environments share it as a :class:`LazyDB`, paying only for what they touch."""


def _mock() -> tuple[type[Toolkit], type, type[Toolkit] | None, type | None]:
    from .mock import MockDB, MockTools, MockUserDB, MockUserTools

    return MockTools, MockDB, MockUserTools, MockUserDB


def _airline() -> tuple[type[Toolkit], type, type[Toolkit] | None, type | None]:
    from .airline import AirlineDB, AirlineTools

    return AirlineTools, AirlineDB, None, None


def _retail() -> tuple[type[Toolkit], type, type[Toolkit] | None, type | None]:
    from .retail import RetailDB, RetailTools

    return RetailTools, RetailDB, None, None


TAU2_DOMAINS: dict[str, Tau2Spec] = {
    "mock": Tau2Spec(_mock, user_db_default={"notifications": {}}),
    "airline": Tau2Spec(_airline, lazy=True),
    "retail": Tau2Spec(_retail, lazy=True),
}


def tau2_domain_dir(root: Path, name: str) -> Path | None:
    """The folder of domain ``name`` under a tau2-bench checkout, its data folder, or a domains folder."""
    for rel in ("data/tau2/domains", "tau2/domains", "domains", "."):
        d = root / rel / name
        if data_file(d, "tasks.json") is not None:
            return d
    return None


@functools.lru_cache(maxsize=8)
def _data(path: Path, mtime_ns: int) -> Any:
    return _read_json(path)


@functools.lru_cache(maxsize=4)
def _lazy_base(db_model: type, path: Path, mtime_ns: int) -> LazyBase:
    return LazyBase(db_model, _cached_json(path))


def _cached_json(path: Path) -> Any:
    """A data file's JSON, parsed once per process (never mutated: databases are validated into new objects)."""
    return _data(path, path.stat().st_mtime_ns)


def load_tau2(name: str, tau2_data: str | Path | None = None, *, task_set: str | None = None) -> Domain:
    """tau2-bench's domain ``name`` from the given data folder, else $KEYE_TAU2_DATA, else the bundled copy."""
    spec = TAU2_DOMAINS[name]
    root = tau2_data_dir(tau2_data) or BUNDLED
    d = tau2_domain_dir(root, name)
    if d is None:
        raise ConfigError(f"no {name} domain under {root}",
                          hint=f"expected data/tau2/domains/{name}/tasks.json there; pass --tau2-data with a "
                               f"tau2-bench checkout (or unset {TAU2_DATA_ENV} to use the bundled copy)")
    tools_cls, db_model, user_cls, user_model = spec.toolkits()
    policy = (d / "policy.md").read_text(encoding="utf-8")
    db_file = data_file(d, "db.json")
    if db_file is None:
        raise ConfigError(f"domain folder {d} has no db.json")
    user_file = data_file(d, "user_db.json")
    user_data = _cached_json(user_file) if user_file is not None else spec.user_db_default
    try:  # fail here, with the file named, rather than inside every simulation
        base = _lazy_base(db_model, db_file, db_file.stat().st_mtime_ns) if spec.lazy else None
        db_data = None if spec.lazy else db_model.model_validate(_cached_json(db_file)).model_dump()
    except ValidationError as e:
        raise ConfigError(f"the database does not fit the {name} domain's model: {str(e).splitlines()[0]}",
                          file=str(db_file)) from None

    async def make() -> Environment:
        kit = tools_cls(LazyDB(base) if base is not None else db_model.model_validate(db_data))
        user_kit = None
        if user_cls is not None:
            user_kit = user_cls(user_model.model_validate(user_data) if user_model is not None else user_data)
        return Environment(name, policy, kit, user_kit)

    tasks, splits = _tasks_and_splits(d, name, task_set, root)
    return Domain(name, policy, make, tasks, splits, source=str(d), user_guidelines=tau2_user_guidelines(d))


def tau2_user_guidelines(domain_dir: Path) -> dict[str, str]:
    """tau2-bench's own user-simulation guidelines, when its data folder has them (``user_simulator/`` beside
    ``domains/``), so tau2 domains are simulated with the words upstream uses."""
    folder = domain_dir.parent.parent / "user_simulator"
    out = {}
    for key, name in (("plain", "simulation_guidelines.md"), ("tools", "simulation_guidelines_tools.md")):
        f = folder / name
        if f.is_file():
            # upstream fills this slot with optional persona guidelines; none are configured here
            out[key] = f.read_text(encoding="utf-8").replace("<PERSONA_GUIDELINES>", "")
    return out
