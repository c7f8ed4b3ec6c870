"""Model backends: implementations of the ModelBackend protocol, and :func:`load_model`, which builds one from a
model spec string (``"demo"``, ``"openai:NAME"``, a ``.gguf`` file, a checkpoint directory, ``"keye:PRESET"``).

Import the backends from their modules (``keye_agent.backends.openai``, ``.scripted``, ``.transformers``,
``.keye``) or from the top-level ``keye_agent`` package; this package imports none of them eagerly, so using one
never loads the dependencies of another (torch, xgrammar).
"""

from .specs import ModelSpec, load_model, parse_model_spec

__all__ = ["ModelSpec", "load_model", "parse_model_spec"]
