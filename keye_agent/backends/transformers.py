"""`TransformersBackend`: any local transformers causal LM (a checkpoint directory, or a GGUF file read through
transformers and ``gguf``), with streaming, stop at end of turn, and xgrammar-constrained tool calls.

Example::

    backend = TransformersBackend(".cache/models/SmolLM2-135M-Instruct")
    turn = backend.generate([Message.user("Weather in Paris?")], tools=[weather.openai_schema()],
                            settings=GenerationSettings(tool_choice="required"))

With ``constrained=True`` (the default) every tool call the model writes is valid JSON matching a registered
tool's schema, by construction (see :mod:`keye_agent.backends.constrained`).
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import torch

from keye_agent.errors import ConfigError
from keye_agent.formats.hermes import HERMES, RESPONSE_CLOSE, RESPONSE_OPEN, THINK_OPEN
from keye_agent.types import AssistantTurn, GenerationSettings, Message, StreamChunk, Usage

from ._hermes import StreamSplitter, hermes_messages, message_text, native_messages, tools_block
from .base import StreamingBackend
from .constrained import GrammarDecoder, ToolCallGrammar
from .parsing import parse_tool_calls

# names of end-of-turn tokens across common chat formats; those present in the vocabulary stop generation
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
_INVENTED_RESULT = (RESPONSE_OPEN, RESPONSE_CLOSE)


def _load(path: Path, device: str, dtype: torch.dtype | None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"GGUF file not found: {path}")
        src, kw = str(path.parent), {"gguf_file": path.name}
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a transformers checkpoint (no config.json)",
                              hint="point --model at a checkpoint directory or a .gguf file")
        src, kw = str(path), {}
    else:
        raise ConfigError(f"model not found: {path}", hint="give a checkpoint directory or a .gguf file")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype or torch.float32, **kw)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"transformers could not load {path}: {e}",
                          hint="GGUF needs the gguf and accelerate packages (pip install 'keye-agent[model]')") from e
    return model.to(device).eval(), tokenizer


def export_gguf_checkpoint(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Read a GGUF file through transformers (dequantising it) and save it as a safetensors checkpoint directory.

    Parsing GGUF metadata in transformers takes tens of seconds for a 49k-token vocabulary, every load; the saved
    directory loads in under a second with the same weights (the dequantised Q4 values, bit for bit).
    """
    model, tokenizer = _load(Path(gguf_path), "cpu", torch.float32)
    model.hf_quantizer = None  # the weights are plain float tensors now; this lets save_pretrained write them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)  # written whole or not at all: a killed export never leaves a half checkpoint behind
    return out


class TransformersBackend(StreamingBackend):
    """A local causal LM through transformers. ``path``: a checkpoint directory or a ``.gguf`` file.

    ``tool_choice`` has the OpenAI meaning. ``constrained``: hold tool calls to the tools' schemas with xgrammar
    (default on); that is what makes "required" and a named tool certain. Unconstrained, "none" still removes the
    tools from the prompt, but "required" or a name is only a wish the model may ignore. ``device``: "cpu" or
    "cuda". ``threads``: torch CPU threads (None leaves torch's choice). ``parallel_tool_calls=False``: at most
    one call per turn when constrained (OpenAI's option of that name; it keeps small models from repeating a call).
    """

    call_format = HERMES
    """The tool-call format the model writes (the agent loop words its corrections by it)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        constrained: bool = True,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        name: str | None = None,
        context_window: int | None = None,
        threads: int | None = None,
        parallel_tool_calls: bool = True,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        if model is None or tokenizer is None:
            if path is None:
                raise ConfigError("TransformersBackend needs a path (or a model and its tokenizer)")
            model, tokenizer = _load(Path(path), device, dtype)
        self.model, self.tokenizer = model, tokenizer
        self.device = device
        self.constrained = constrained
        self.parallel_tool_calls = parallel_tool_calls
        self.name = name or f"transformers:{Path(str(path)).name if path else type(model).__name__}"
        cfg = model.config
        self.context_window = context_window or getattr(cfg, "max_position_embeddings", None) or 4096
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        template = getattr(tokenizer, "chat_template", None) or ""
        if not template:
            raise ConfigError(f"{self.name}: the tokenizer has no chat template",
                              hint="use an instruct/chat checkpoint, or set tokenizer.chat_template")
        self.native_tools = "tools" in template
        self.stop_ids = self._stop_ids()
        # transformers 5 names the KV cache argument `cache`, earlier versions `past_key_values`
        params = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._grammar: ToolCallGrammar | None = None
        self.last_decoder: GrammarDecoder | None = None
        """The grammar decoder of the last constrained generation (benchmarks read its timings)."""
        self.last_token_ids: list[int] = []
        self.last_step_times: list[float] = []
        """Seconds per generated token of the last generation (forward, sampling and mask)."""

    def _stop_ids(self) -> list[int]:
        ids: set[int] = set()
        eos = getattr(self.tokenizer, "eos_token_id", None)
        gen = getattr(self.model, "generation_config", None)
        for v in (eos, getattr(gen, "eos_token_id", None)):
            ids.update([v] if isinstance(v, int) else (v or []))
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
        return sorted(i for i in ids if i < self.vocab_size)

    @property
    def grammar(self) -> ToolCallGrammar:
        if self._grammar is None:
            self._grammar = ToolCallGrammar.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                             stop_token_ids=self.stop_ids)
        return self._grammar

    # ---- prompt ----------------------------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
               settings: GenerationSettings | None = None) -> str:
        """The prompt text the model sees, ending with the assistant header."""
        kw: dict[str, Any] = {}
        if settings is not None and settings.enable_thinking is not None:
            kw["enable_thinking"] = settings.enable_thinking
        if self.native_tools:
            conv: list[dict[str, Any]] = native_messages(messages, self.name)
            kw["tools"] = list(tools) if tools else None
        else:
            conv = hermes_messages(messages, tools, self.name)
        return self.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False, **kw)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> int:
        """Tokens of each message's text and calls by the model's tokenizer, plus 4 per message for the template's
        role markers; plus the rendered tool list."""
        total = 0
        for m in messages:
            total += 4 + len(self._encode(message_text(m, self.name)))
            for c in m.tool_calls or ():
                total += len(self._encode(c.name)) + len(self._encode(str(c.arguments))) + 8
        if tools:
            total += len(self._encode(tools_block(tools)))
        return total

    # ---- generation ------------------------------------------------------------------------------------------

    async def astream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, settings: GenerationSettings
    ) -> AsyncIterator[StreamChunk]:
        offered = list(tools or []) if settings.tool_choice != "none" else []
        prompt = self.render(messages, offered or None, settings)
        prompt_ids = self._encode(prompt)
        if len(prompt_ids) >= self.context_window:
            from keye_agent.errors import ContextWindowError

            raise ContextWindowError(f"{self.name}: the prompt has {len(prompt_ids)} tokens; the window is "
                                     f"{self.context_window}")
        decoder = None
        if self.constrained and offered:
            thinking = bool(settings.enable_thinking) and THINK_OPEN in (self.tokenizer.chat_template or "")
            decoder = self.grammar.decoder(offered, settings.tool_choice, allow_reasoning=thinking,
                                           parallel=self.parallel_tool_calls)
        self.last_decoder = decoder
        state = _Decode(self, prompt_ids, settings, decoder)
        splitter = StreamSplitter(in_reasoning=prompt.rstrip().endswith(THINK_OPEN))
        text, finish, emitted = "", "length", 0
        # tool results are written by the framework, never by the model: one that starts writing a
        # <tool_response> is inventing a result, so its turn ends there
        stops = [s for s in (*settings.stop, *(() if self.native_tools else _INVENTED_RESULT)) if s]
        max_new = min(settings.max_tokens, self.context_window - len(prompt_ids))
        while len(state.generated) < max_new:
            token = await asyncio.to_thread(state.step)
            if token in self.stop_ids:
                finish = "stop"
                break
            text = self.tokenizer.decode(state.generated, skip_special_tokens=False)
            if text.endswith("\ufffd"):
                continue  # half of a multi-byte character: wait for the rest
            hit = next((s for s in stops if s in text), None)
            if hit is not None:
                text, finish = text[: text.index(hit)], "stop"
                break
            # hold back a tail that may still become a stop string, so no piece of one is ever streamed
            hold = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            for kind, piece in splitter.feed(text[emitted:len(text) - hold]):
                yield StreamChunk(kind, piece)  # type: ignore[arg-type]
            emitted = len(text) - hold
        for kind, piece in splitter.feed(text[emitted:]):
            yield StreamChunk(kind, piece)  # type: ignore[arg-type]
        for kind, piece in splitter.flush():
            yield StreamChunk(kind, piece)  # type: ignore[arg-type]
        self.last_token_ids = list(state.generated)
        self.last_step_times = state.step_times
        parsed = parse_tool_calls(text, allow_untagged=bool(offered))
        turn = AssistantTurn(
            text=parsed.text, reasoning=parsed.reasoning, tool_calls=list(parsed.tool_calls),
            parse_errors=list(parsed.errors), raw=text,
            finish_reason="tool_calls" if parsed.tool_calls else finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(state.generated)),
        )
        yield StreamChunk("done", turn=turn)


class _Decode:
    """One generation's state: the KV cache, the tokens so far, the sampler. ``step`` makes one token."""

    def __init__(self, backend: TransformersBackend, prompt_ids: list[int], settings: GenerationSettings,
                 decoder: GrammarDecoder | None) -> None:
        from transformers import DynamicCache

        self.b = backend
        self.settings = settings
        self.decoder = decoder
        self.cache = DynamicCache()
        self.prompt = torch.tensor([prompt_ids], dtype=torch.long, device=backend.device)
        self.generated: list[int] = []
        self.step_times: list[float] = []
        self.gen = None
        if settings.seed is not None and settings.temperature > 0:
            self.gen = torch.Generator(device=backend.device).manual_seed(settings.seed)

    @torch.inference_mode()
    def step(self) -> int:
        t0 = time.perf_counter()
        ids = self.prompt if not self.generated else self.prompt.new_tensor([[self.generated[-1]]])
        out = self.b.model(input_ids=ids, **{self.b.cache_kwarg: self.cache}, use_cache=True, logits_to_keep=1)
        logits = out.logits[0, -1].float()  # [V]
        s = self.settings
        if s.repetition_penalty != 1.0:
            seen = torch.cat([self.prompt[0], self.prompt.new_tensor(self.generated)]).unique()
            vals = logits[seen]
            logits[seen] = torch.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
        if self.decoder is not None:
            self.decoder.mask(logits)
        token = self._sample(logits)
        if self.decoder is not None:
            self.decoder.accept(token)
        self.generated.append(token)
        self.step_times.append(time.perf_counter() - t0)
        return token

    def _sample(self, logits: torch.Tensor) -> int:
        s = self.settings
        if s.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / s.temperature
        if s.top_k and s.top_k > 0:
            kth = torch.topk(logits, min(s.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if s.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > s.top_p  # keep the smallest set whose mass reaches top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=self.gen))

