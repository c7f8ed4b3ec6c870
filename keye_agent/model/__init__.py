"""The Keye-VL-2.0 language model in plain PyTorch: config, layers with DSA and MoE, cache, generation.

Imports only torch (and triton, when the kernels are present), the standard library and numpy, so it runs on a
GPU machine without the agent's dependencies.
"""

from keye_agent.model.build import build_model, init_random_weights
from keye_agent.model.cache import StaticCache
from keye_agent.model.config import PRESETS, KeyeConfig, SparseAttentionConfig
from keye_agent.model.generate import GenerationOutput, generate, stream_generate
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams, sample_next

__all__ = [
    "PRESETS", "GenerationOutput", "KeyeConfig", "KeyeForCausalLM", "SamplingParams", "SparseAttentionConfig",
    "StaticCache", "build_model", "generate", "init_random_weights", "sample_next", "stream_generate",
]
