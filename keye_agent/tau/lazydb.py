"""`LazyDB`: a large database shared by every environment of a process, each environment paying only for the
records it touches.

A domain database that is a pydantic model of tables (``dict[str, Record]`` fields, as tau2-bench's airline and
retail databases are) is canonicalised once (validated and dumped, so defaults are filled in) into a
:class:`LazyBase`. Each environment then gets a :class:`LazyDB` over it: a record is validated into its own model
the first time the environment reads it (so tools mutate their copy, never the shared data), new records are kept
beside the shared ones, and the dump and the hash reuse the shared records' canonical data and JSON text. The dump
and the hash are exactly those of the equivalent pydantic database (``model_dump()``; ``json_hash`` of it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, MutableMapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)  # the text json_hash digests


class TableBase:
    """One shared table: its record model and canonical records, and their JSON text (made on first need)."""

    def __init__(self, model: type[BaseModel], records: dict[str, Any]) -> None:
        self.model = model
        self.records = records
        self.sorted_keys = sorted(records)
        self._entries: dict[str, str] = {}
        self._text: str | None = None

    def entry(self, key: str) -> str:
        """``"key": <record>`` as it appears in the sorted-keys JSON of the table."""
        t = self._entries.get(key)
        if t is None:
            t = self._entries[key] = f"{_dumps(key)}: {_dumps(self.records[key])}"
        return t

    def text(self) -> str:
        if self._text is None:
            self._text = "{" + ", ".join(self.entry(k) for k in self.sorted_keys) + "}"
        return self._text


class LazyBase:
    """A database model's data, validated and canonicalised once; never mutated afterwards."""

    def __init__(self, db_model: type[BaseModel], data: Any) -> None:
        canonical = db_model.model_validate(data).model_dump()
        self.db_model = db_model
        self.tables: dict[str, TableBase] = {}
        for name, field in db_model.model_fields.items():
            ann = field.annotation
            if get_origin(ann) is not dict or not (isinstance(get_args(ann)[1], type)
                                                  and issubclass(get_args(ann)[1], BaseModel)):
                raise TypeError(f"{db_model.__name__}.{name} is not a table (dict[str, a pydantic model])")
            self.tables[name] = TableBase(get_args(ann)[1], canonical[name])


class Table(MutableMapping[str, Any]):
    """One environment's view of a shared table: shared records are validated into private models on first
    access; writes and deletions stay in this view."""

    def __init__(self, base: TableBase) -> None:
        self._base = base
        self._live: dict[str, BaseModel] = {}
        self._added: list[str] = []
        self._deleted: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        value = self._live.get(key)
        if value is not None:
            return value
        if key in self._deleted or key not in self._base.records:
            raise KeyError(key)
        value = self._live[key] = self._base.model.model_validate(self._base.records[key])
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, self._base.model):
            value = self._base.model.model_validate(value)
        if key not in self:
            self._added.append(key)
        self._deleted.discard(key)
        self._live[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._live.pop(key, None)
        if key in self._added:
            self._added.remove(key)
        else:
            self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._live or (key in self._base.records and key not in self._deleted)

    def __iter__(self) -> Iterator[str]:
        for k in self._base.records:
            if k not in self._deleted:
                yield k
        yield from list(self._added)

    def __len__(self) -> int:
        return len(self._base.records) - len(self._deleted) + len(self._added)

    def peek(self, key: str) -> dict[str, Any]:
        """A record as JSON data, without making it this view's own: for scans that only read (do not mutate)."""
        value = self._live.get(key)
        if value is not None:
            return value.model_dump()
        if key in self._deleted:
            raise KeyError(key)
        return self._base.records[key]

    def dump(self) -> dict[str, Any]:
        """The table as JSON data; records not touched are the shared canonical data (do not mutate them)."""
        return {k: self._live[k].model_dump() if k in self._live else self._base.records[k] for k in self}

    def json_text(self) -> str:
        """The table's sorted-keys JSON text; the untouched records' parts are the shared, cached ones."""
        if not self._live and not self._added and not self._deleted:
            return self._base.text()
        keys = self._base.sorted_keys if not self._added and not self._deleted else sorted(self)
        parts = [f"{_dumps(k)}: {_dumps(self._live[k].model_dump())}" if k in self._live else self._base.entry(k)
                 for k in keys]
        return "{" + ", ".join(parts) + "}"


class LazyDB:
    """A database whose tables (``db.flights``, ``db.users``...) are :class:`Table` views over a shared base."""

    def __init__(self, base: LazyBase) -> None:
        self._base = base
        self._tables = {name: Table(t) for name, t in base.tables.items()}

    def __getattr__(self, name: str) -> Table:
        tables = self.__dict__.get("_tables")
        if tables is not None and name in tables:
            return tables[name]
        raise AttributeError(name)

    def dump(self) -> dict[str, Any]:
        return {name: t.dump() for name, t in self._tables.items()}

    def hash(self) -> str:
        """``json_hash(self.dump())``, composed from the cached text of the records not touched."""
        text = "{" + ", ".join(f"{_dumps(n)}: {self._tables[n].json_text()}" for n in sorted(self._tables)) + "}"
        return hashlib.sha256(text.encode()).hexdigest()

    def merged(self, data: dict[str, Any] | None) -> LazyDB:
        """A new database: this one's data with ``data`` merged in (tau2-bench's rule), validated by the model."""
        from .toolkit import deep_merge

        return LazyDB(LazyBase(self._base.db_model, deep_merge(self.dump(), data or {})))


def peek(table: MutableMapping[str, Any], key: str) -> dict[str, Any]:
    """A record of a :class:`Table` or of a plain table of models, as JSON data to read (not to mutate)."""
    return table.peek(key) if isinstance(table, Table) else table[key].model_dump()
