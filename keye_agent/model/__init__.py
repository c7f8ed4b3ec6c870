"""The Keye-VL-2.0 language model in plain PyTorch: config, layers with DSA and MoE, cache, generation, loading,
tokenizer and chat template.

Imports only torch (and triton, when the kernels are present), the standard library and numpy at import time
(safetensors, tokenizers and jinja2 are imported where they are used), so it runs on a GPU machine without the
agent's dependencies. Attention and indexer work goes through ``keye_agent.model.ops`` (reference or kernels).
"""

from keye_agent.model.build import build_model, init_random_weights
from keye_agent.model.cache import StaticCache
from keye_agent.model.chat_template import render_jinja, render_qwen3
from keye_agent.model.config import PRESETS, KeyeConfig, SparseAttentionConfig
from keye_agent.model.generate import GenerationOutput, generate, stream_generate
from keye_agent.model.loading import LoadedCheckpoint, load_checkpoint
from keye_agent.model.model import KeyeForCausalLM
from keye_agent.model.sampling import SamplingParams, sample_next
from keye_agent.model.tokenizer import IncrementalDecoder, KeyeTokenizer

__all__ = [
    "PRESETS", "GenerationOutput", "IncrementalDecoder", "KeyeConfig", "KeyeForCausalLM", "KeyeTokenizer",
    "LoadedCheckpoint", "SamplingParams", "SparseAttentionConfig", "StaticCache", "build_model", "generate",
    "init_random_weights", "load_checkpoint", "render_jinja", "render_qwen3", "sample_next", "stream_generate",
]
