"""Tool-call formats: how a model is told about tools and how its calls are written and read back.

Plain Python over dicts and strings (no pydantic, no torch), so ``keye_agent.model`` renders prompts with it on a
GPU machine that has none of the agent's dependencies, and every backend reads calls with the same code.
:mod:`keye_agent.formats.hermes` is the Qwen3/Hermes format of Keye-VL-2.0 and most open models.
"""
