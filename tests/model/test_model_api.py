"""The public API of keye_agent.model is exactly these names."""

import keye_agent.model as m


def test_public_api_is_pinned():
    assert sorted(m.__all__) == sorted([
        "PRESETS", "GenerationOutput", "IncrementalDecoder", "KeyeConfig", "KeyeForCausalLM", "KeyeTokenizer",
        "LoadedCheckpoint", "SamplingParams", "SparseAttentionConfig", "StaticCache", "build_model", "generate",
        "init_random_weights", "load_checkpoint", "render_jinja", "render_qwen3", "sample_next", "stream_generate",
    ])
    assert all(hasattr(m, n) for n in m.__all__)
