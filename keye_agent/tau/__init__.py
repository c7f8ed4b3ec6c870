"""TAU2-style task runner: domains, tasks, an orchestrator of agent, user simulator and environment, tau2-bench's
evaluation, pass^k, and resumable concurrent runs whose results files tau2-bench's own tooling reads.

Example::

    import asyncio
    from keye_agent.tau import load_domain, run_tasks, RunSettings, OracleAgent, OracleUser

    domain = load_domain("mock", tau2_data="/path/to/tau2-bench")
    tasks = domain.select(split="base")
    results = asyncio.run(run_tasks(domain, tasks, lambda t, k: OracleAgent(t), lambda t, k: OracleUser(t),
                                    RunSettings(num_trials=1, save_to="results.json")))
"""

from .asgi_toolkit import AsgiToolkit
from .domain import Domain, load_domain, tau2_data_dir
from .environment import Environment, TauError
from .evaluator import evaluate, gold_environment
from .messages import TauMessage, TauToolCall
from .metrics import Summary, pass_hat_k, summarize
from .oracle import IdleAgent, OracleAgent, OracleUser
from .orchestrator import Limits, run_simulation
from .results import Results, ResultsError, SimulationRun
from .runner import RunSettings, run_tasks
from .schema import Action, RewardType, Task, load_tasks, parse_tasks
from .toolkit import Toolkit, env_tool
from .user import UserSimulator

__all__ = [
    "Action", "AsgiToolkit", "Domain", "Environment", "IdleAgent", "Limits", "OracleAgent", "OracleUser", "Results",
    "ResultsError", "RewardType", "RunSettings", "SimulationRun", "Summary", "Task", "TauError", "TauMessage",
    "TauToolCall", "Toolkit", "UserSimulator", "env_tool", "evaluate", "gold_environment", "load_domain",
    "load_tasks", "parse_tasks", "pass_hat_k", "run_simulation", "run_tasks", "summarize", "tau2_data_dir",
]
