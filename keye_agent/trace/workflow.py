"""A span per TAU simulation (``invoke_workflow tau``): the agent's runs of that simulation, one per reply, are its
children, with the reward and how the simulation ended on it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from keye_agent.errors import redact

from .spans import as_tracer

if TYPE_CHECKING:
    from keye_agent.tau.results import SimulationRun

WORKFLOW_NAME = "tau"


async def traced_simulation(tracer: Any, domain: str, task_id: str, trial: int,
                            simulation: Awaitable[SimulationRun]) -> SimulationRun:
    """Await ``simulation`` inside its span (the current span, so the agent's runs nest under it)."""
    attrs = {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": WORKFLOW_NAME,
             "keye.tau.domain": redact(domain), "keye.tau.task_id": redact(task_id), "keye.tau.trial": trial}
    with as_tracer(tracer).start_as_current_span(f"invoke_workflow {WORKFLOW_NAME}", kind=SpanKind.INTERNAL,
                                                 attributes=attrs) as span:
        sim = await simulation
        span.set_attribute("keye.tau.termination_reason", sim.termination_reason)
        if sim.reward is not None:
            span.set_attribute("keye.tau.reward", sim.reward)
        if sim.termination_reason == "unexpected_error":
            span.set_attribute("error.type", "unexpected_error")
            span.set_status(Status(StatusCode.ERROR, redact(str((sim.info or {}).get("error", "")))))
        return sim


__all__ = ["traced_simulation"]
