"""Model backends: implementations of the ModelBackend protocol.

Import them from their modules (``keye_agent.backends.openai``, ``.scripted``, ``.transformers``, ``.keye``) or from
the top-level ``keye_agent`` package; this package imports none of them eagerly, so using one never loads the
dependencies of another (torch, xgrammar).
"""
