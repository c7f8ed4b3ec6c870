"""tau2-bench's ``mock`` domain: a task tracker. Tools written here from upstream's data model, policy and the tool
names and arguments its tasks use; its db.json, policy.md and tasks.json come from a tau2-bench data folder."""

from .tools import MockDB, MockTools, MockUserDB, MockUserTools

__all__ = ["MockDB", "MockTools", "MockUserDB", "MockUserTools"]
