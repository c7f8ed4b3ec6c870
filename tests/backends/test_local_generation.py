"""The one local generation path: the decode loop of model.generate serves the model API and the Keye backend's
prefix cache alike (checked against full forwards), and the one stop-string streamer does work linear in the
answer, on the real SmolLM2 tokenizer of the demo model (the transformers backend's; fetched by the same function
`make demo` uses)."""

from __future__ import annotations

import pytest
import torch

from keye_agent.backends._keye_decode import PrefixCache, decode
from keye_agent.backends._local import TextStream
from keye_agent.backends.transformers import _Decoding
from keye_agent.model import build_model, generate
from keye_agent.model.sampling import SamplingParams, apply_repetition_penalty
from keye_agent.model.tokenizer import IncrementalDecoder

PROMPT = [5, 17, 300, 42, 9, 1000, 77]


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", device="cpu", dtype=torch.float32, seed=3)


def test_repetition_penalty_matches_full_forwards_on_both_entry_points(model) -> None:
    """Greedy with a repetition penalty over prompt and answer, against a plain loop of full forwards."""
    sampling = SamplingParams(repetition_penalty=1.8)
    seq = list(PROMPT)
    with torch.no_grad():
        for _ in range(12):
            logits = model(torch.tensor([seq]))[:, -1]
            seq.append(int(apply_repetition_penalty(logits, torch.tensor([seq]), 1.8).argmax()))
    want = seq[len(PROMPT):]
    assert generate(model, PROMPT, 12, sampling, stop_token_ids=[]).token_ids == want
    pc = PrefixCache(model, 64)
    got = decode(pc, PROMPT, 12, sampling, [], valid_vocab=model.config.vocab_size)
    assert got.token_ids == want and got.finish_reason == "length" and len(got.step_times) == 12


def test_seeded_sampling_is_the_same_through_the_model_api_and_the_backend_loop(model) -> None:
    sampling = SamplingParams(temperature=0.9, top_k=40, top_p=0.95, seed=11)
    a = generate(model, PROMPT, 16, sampling, stop_token_ids=[]).token_ids
    b = decode(PrefixCache(model, 64), PROMPT, 16, sampling, [], valid_vocab=model.config.vocab_size,
               generator=torch.Generator().manual_seed(11)).token_ids
    assert a == b and len(a) == 16


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    from keye_agent.backends.demo_model import ensure_demo_model

    return AutoTokenizer.from_pretrained(ensure_demo_model(quiet=True))


TEXT = ("<think>plan</think>Grüße aus Köln 🌤 und 東京. Here is the answer: 42.\n"
        '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call> and then STOP here, never streamed.')


def _stream(tokenizer, ids: list[int], stops: list[str]) -> tuple[list[tuple[str, str]], str, bool, int]:
    """(posted pieces, raw text, whether a stop string ended it, token ids the tokenizer decoded in all)."""
    decoded = [0]
    inner = _Decoding(tokenizer)

    class Counting:
        def decode(self, window, skip_special_tokens=False):
            decoded[0] += len(window)
            return inner.decode(window, skip_special_tokens)

    posted: list[tuple[str, str]] = []
    stream = TextStream(IncrementalDecoder(Counting()), stops, posted.append)  # type: ignore[arg-type]
    for t in ids:
        if not stream.feed(t):
            break
    return posted, stream.finish(), stream.stopped, decoded[0]


def test_streamer_is_linear_and_matches_a_full_decode(hf_tokenizer) -> None:
    ids = hf_tokenizer(TEXT * 40, add_special_tokens=False)["input_ids"]
    posted, raw, stopped, decoded = _stream(hf_tokenizer, ids, [])
    assert raw == hf_tokenizer.decode(ids) and not stopped
    assert "".join(p for k, p in posted if k == "text").count("Here is the answer") == 40
    # a window of a few ids per token; re-decoding the whole answer at every token would read len(ids)**2 / 2
    assert decoded <= 8 * len(ids), (decoded, len(ids))


def test_a_stop_string_across_tokens_is_never_streamed(hf_tokenizer) -> None:
    ids = hf_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    posted, raw, stopped, _ = _stream(hf_tokenizer, ids, ["STOP here"])
    shown = "".join(p for _, p in posted)
    assert stopped and raw.endswith("and then ") and "STOP" not in shown and "ST" not in shown.split("then")[-1]
    assert '"name"' not in shown and ("reasoning", "plan") in posted
