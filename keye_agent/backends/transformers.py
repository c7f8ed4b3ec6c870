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

import contextlib
import inspect
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from keye_agent.errors import ConfigError
from keye_agent.formats.hermes import RESPONSE_CLOSE, RESPONSE_OPEN, THINK_OPEN
from keye_agent.model.generate import DecodeResult, TokenMask, decode_tokens, run_decode
from keye_agent.model.tokenizer import IncrementalDecoder
from keye_agent.types import GenerationSettings, Message

from ._hermes import hermes_messages, message_text, native_messages, tools_block
from ._local import Job, LocalBackend
from .constrained import GrammarDecoder, ToolCallGrammar

# names of end-of-turn tokens across common chat formats; those present in the vocabulary stop generation
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
_INVENTED_RESULT = (RESPONSE_OPEN, RESPONSE_CLOSE)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' own progress bars ("Loading weights") while a model loads: a library call prints
    nothing; the CLI shows its own spinner."""
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tf_logging.enable_progress_bar()


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
        with quiet_transformers():
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


class TransformersBackend(LocalBackend):
    """A local causal LM through transformers. ``path``: a checkpoint directory or a ``.gguf`` file.

    ``tool_choice`` has the OpenAI meaning. ``constrained``: hold tool calls to the tools' schemas with xgrammar
    (default on); that is what makes "required" and a named tool certain. Unconstrained, "none" still removes the
    tools from the prompt, but "required" or a name is only a wish the model may ignore. ``device``: "cpu" or
    "cuda". ``threads``: torch CPU threads (None leaves torch's choice). ``parallel_tool_calls=False``: at most
    one call per turn when constrained (OpenAI's option of that name; it keeps small models from repeating a call).
    """

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
        super().__init__()
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

    # ---- generation (the skeleton is LocalBackend's) ---------------------------------------------------------

    def _allow_reasoning(self, settings: GenerationSettings) -> bool:
        return bool(settings.enable_thinking) and THINK_OPEN in (self.tokenizer.chat_template or "")

    def _stop_strings(self, settings: GenerationSettings) -> list[str]:
        # tool results are written by the framework, never by the model: one that starts writing a
        # <tool_response> is inventing a result, so its turn ends there
        return [*settings.stop, *(() if self.native_tools else _INVENTED_RESULT)]

    def _detokenizer(self) -> IncrementalDecoder:
        return IncrementalDecoder(_Decoding(self.tokenizer))  # type: ignore[arg-type]

    def _decode(self, job: Job, mask: TokenMask | None, cancel: threading.Event,
                on_token: Callable[[int], bool]) -> DecodeResult:
        self.last_decoder = mask if isinstance(mask, GrammarDecoder) else None
        gen = None
        if job.settings.seed is not None and job.settings.temperature > 0:
            gen = torch.Generator(device=self.device).manual_seed(job.settings.seed)
        out = DecodeResult(prompt_tokens=len(job.prompt_ids))
        tokens = decode_tokens(_HFStep(self), job.prompt_ids, job.prompt_ids, job.max_new, job.sampling,
                               self.stop_ids, out, mask=mask, generator=gen, cancel=cancel)
        run_decode(tokens, out, on_token)
        self.last_token_ids = list(out.token_ids)
        self.last_step_times = out.step_times
        return out


class _Decoding:
    """A transformers tokenizer as ``model.tokenizer.IncrementalDecoder`` reads one: ``decode(ids, skip)``, no
    clean-up of spaces (it would change text across the decoder's window boundary)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens,
                                clean_up_tokenization_spaces=False)


class _HFStep:
    """The ``model.generate.TokenStep`` of a transformers causal LM: a fresh ``DynamicCache`` per generation."""

    def __init__(self, backend: TransformersBackend) -> None:
        from transformers import DynamicCache

        self.model, self.kwarg, self.device = backend.model, backend.cache_kwarg, backend.device
        self.cache = DynamicCache()

    def _run(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, **{self.kwarg: self.cache}, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()  # [V]

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        return self._run(list(ids))

    def step(self, token_id: int) -> torch.Tensor:
        return self._run([token_id])
