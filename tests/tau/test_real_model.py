"""A real model on both sides, end to end (runner, orchestrator, agent loop, user simulator, evaluator, results
file): the offline demo model (SmolLM2-135M, on CPU), fetched into the cache on first use as `make demo` does. A
135M model does not solve the task; this proves the plumbing, not the model."""

from __future__ import annotations

import asyncio

from keye_agent.tau import Limits, Results, RunSettings, run_tasks
from keye_agent.types import GenerationSettings


def test_demo_model_runs_a_task_end_to_end(mock_domain, tmp_path) -> None:
    from keye_agent.backends.transformers import TransformersBackend
    from keye_agent.cli.demo_model import ensure_demo_model

    ckpt = ensure_demo_model()

    model = TransformersBackend(ckpt)
    domain = mock_domain  # the smallest policy and tool set: the fewest tokens for a CPU model to read
    out = tmp_path / "real.json"
    short = GenerationSettings(max_tokens=16, temperature=0.0)
    res = asyncio.run(run_tasks(domain, [domain.task("update_task_1")], lambda t, k: model,
                                lambda t, k: model,
                                RunSettings(limits=Limits(max_steps=2, max_steps_per_reply=1), agent_settings=short,
                                            user_settings=short, agent_name=model.name, user_name=model.name,
                                            save_to=out)))
    (sim,) = Results.load(out).simulations
    assert sim.termination_reason in ("max_steps", "user_stop", "agent_stop", "too_many_errors", "agent_error")
    assert sim.reward_info is not None and 0.0 <= sim.reward_info["reward"] <= 1.0
    spoke = [m for m in sim.messages if m.role in ("user", "assistant") and m.usage]
    assert spoke and all(m.usage["completion_tokens"] > 0 for m in spoke)
    assert sim.info["usage"]["user"]["prompt_tokens"] > 0
    assert res.simulations[0].id == sim.id
