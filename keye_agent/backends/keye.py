"""`KeyeBackend`: Keye-VL-2.0 on this machine (a checkpoint directory, or a named preset with random weights) as a
:class:`~keye_agent.types.ModelBackend`.

Example::

    backend = KeyeBackend("/models/Keye-VL-2.0", device="cuda")          # a downloaded checkpoint
    backend = KeyeBackend("tiny", random_weights=True)                     # plumbing checks on the CPU
    turn = backend.generate([Message.user("Weather in Paris?")], tools=[weather.openai_schema()],
                            settings=GenerationSettings(tool_choice="required"))

What it does:

- renders the conversation with the checkpoint's chat template (or our Qwen3 renderer), streams text and reasoning
  deltas, stops at the end of the turn (``<|im_end|>``/eos) or a stop string, and parses ``<tool_call>`` blocks
  with :func:`~keye_agent.backends.parsing.parse_tool_calls`;
- with ``constrained=True`` (default) holds tool calls to the offered schemas with xgrammar, exactly as the
  transformers backend does (:mod:`keye_agent.backends.constrained`), so ``tool_choice`` "required" or a tool name
  gives a call that validates by construction;
- prefix reuse: the KV cache (K, V and DSA index keys) of the previous call is kept, truncated to its longest common
  token prefix with the new prompt, so each planner step prefills only the tokens that are new;
- decode graph (on CUDA by default): each one-token decode step replays a captured CUDA graph
  (``model.graph.DecodeGraph``, one per cache slot and dense/DSA mode, captured again when the cache grows) instead
  of launching hundreds of kernels from Python; the prefill keeps the regular forward, and the tokens are those of the eager step;
- concurrent callers (tasks of one event loop, several loops, threads) are served one at a time under a lock, never
  mixed in the cache; generation runs in a worker thread, so the event loop stays free while the model works;
- ``max_batch=N`` (N > 1) batches them instead (``model.batch.BatchEngine``): concurrent text generations join one
  running batch at every decode step over a paged cache shared by all, with prefix caching across requests (a
  planner's next step and sibling conversations that share a system prompt reuse its pages); each keeps its own
  sampling settings, grammar, stop ids and cancellation. Greedy outputs equal those of ``max_batch=1``;
- ``count_tokens`` is exact: the real tokenizer over the rendered turns.

Images and videos (``ImagePart``/``VideoPart`` in any message, a tool's images included) go through the vision
tower when the model has one (a checkpoint with ``vision_config``, or a preset such as "tiny-vl"): URLs are fetched
through the network guard, images resized under ``image_max_pixels``, videos sampled at 2 fps under
``video_options`` (model.vision.VideoOptions) with their timestamps in the prompt, 3-D MRoPE positions. A prompt
with media is prefilled whole; the next steps of the same conversation (same media, prefix kept past the last
vision token) prefill only their new tokens; decoding runs step by step without the graph (the positions after
media are not their cache slots). Media are known by their parts (path or data): a file changed on disk under the
same path is not noticed. What was changed to fit a budget (frames subsampled, an image downscaled) is in the turn's
``notes``; unreadable or oversized media raise :class:`~keye_agent.errors.MediaError`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch

from keye_agent.errors import ConfigError, MediaError
from keye_agent.model import PRESETS, KeyeConfig, KeyeForCausalLM, KeyeTokenizer, build_model, load_checkpoint
from keye_agent.model.batch import BatchEngine
from keye_agent.model.chat_template import render_qwen3
from keye_agent.model.generate import TokenMask
from keye_agent.model.tokenizer import IncrementalDecoder
from keye_agent.model.vision import (
    VideoOptions,
    VisionInput,
    VisionTokens,
    VisionTower,
    build_prompt,
    build_tower,
    embed_prompt,
    image_input,
    tower_config,
    video_input,
)
from keye_agent.model.vision.preprocess import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS
from keye_agent.tools.netguard import NetPolicy
from keye_agent.types import GenerationSettings, Message, TextPart

from ._keye_decode import DecodeResult, PrefixCache, common_prefix, decode, seeded_generator
from ._keye_tokenizer import plumbing_tokenizer, tool_call_grammar
from ._local import Job, LocalBackend
from ._media import MediaItem, collect_media, fetch_media, message_text, resolve_local
from .specs import check_keye_preset

__all__ = ["KeyeBackend"]

# tokens at the end of the previous prompt that the next one may render differently and still continue it (an
# empty think block pre-filled after the assistant header is not re-rendered in the history)
_CONTINUATION_SLACK = 16


class KeyeBackend(LocalBackend):
    """Keye-VL-2.0 through ``keye_agent.model``. See the module docstring.

    ``path_or_preset``: a checkpoint directory (config.json + safetensors, tokenizer.json) or a preset name
    (``keye_agent.model.PRESETS``: "keye-vl-2.0-30b-a3b", "tiny"). ``random_weights``: draw random weights instead of
    reading them (required for a preset; with a directory, only its config.json and tokenizer are read).
    ``tokenizer``: a :class:`KeyeTokenizer` or a directory holding tokenizer.json; by default the checkpoint's, then
    ``$KEYE_TOKENIZER``, then (presets) a stand-in byte-level BPE with the Qwen special tokens, for plumbing only.
    ``device`` defaults to CUDA when present; ``dtype`` to bf16 on CUDA and float32 on the CPU.
    ``prefix_reuse``: keep the KV cache of the common prefix between calls (default on). ``context_window``: the
    most tokens of prompt and answer (default: the model's ``max_position_embeddings``); the cache grows on demand.
    ``sparse``: force DSA on or off (default: on when the checkpoint has indexer weights). ``cache_slots``: how many
    conversations keep their prefix at once (each slot is a KV cache of its own; 1 suits one agent, more suit
    several agents sharing the backend, e.g. concurrent TAU2 tasks).
    ``decode_graph``: run the one-token decode steps through ``DecodeGraph`` (default: on for a CUDA model, where it
    was measured inside this backend on an H200 (benchmarks/RESULTS.md); off on the CPU, where it gains nothing and
    True runs the same fixed-shape step eagerly). On CUDA the MoE must take a path without host syncs (bfloat16,
    the default dtype there).
    ``max_batch``: how many generations run batched at once (``model.batch.BatchEngine``; default 1, the one-at-a-time
    path with ``cache_slots`` prefix caches); with N > 1, ``page_size`` (tokens per page) and ``cache_tokens`` (the
    paged pool's size, default ``N * min(context_window, 16384)``) shape its cache, ``cache_slots`` serves only
    prompts with images or videos (they keep the one-at-a-time path, pausing the engine's batch while they run).
    ``constrained``: hold tool calls to the offered schemas with xgrammar (default on); ``parallel_tool_calls=False``
    ends a constrained turn after its first call. ``seed``: of the random weights. ``threads``: torch CPU threads.
    ``model``/``tokenizer`` may also be given built (tests); then ``path_or_preset`` may be None.
    ``vision``: a built VisionTower (else the checkpoint's or the preset's; ``load_vision=False`` skips it).
    ``video_options``, ``image_max_pixels``: the budgets of videos and images. ``net_policy``: where media URLs may be
    fetched from (default: public addresses only).
    """

    def __init__(
        self,
        path_or_preset: str | Path | None = None,
        *,
        model: KeyeForCausalLM | None = None,
        tokenizer: KeyeTokenizer | str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        random_weights: bool = False,
        seed: int = 0,
        constrained: bool = True,
        parallel_tool_calls: bool = True,
        prefix_reuse: bool = True,
        context_window: int | None = None,
        sparse: bool | None = None,
        cache_slots: int = 1,
        max_batch: int = 1,
        page_size: int = 32,
        cache_tokens: int | None = None,
        decode_graph: bool | None = None,
        name: str | None = None,
        threads: int | None = None,
        vision: VisionTower | None = None,
        load_vision: bool = True,
        video_options: VideoOptions | None = None,
        image_max_pixels: int = IMAGE_MAX_PIXELS,
        net_policy: NetPolicy | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        found: KeyeTokenizer | None = None
        if model is None:
            if path_or_preset is None:
                raise ConfigError("KeyeBackend needs a checkpoint directory or a preset name (or a built model)",
                                  hint=f"e.g. KeyeBackend('tiny', random_weights=True); presets: {sorted(PRESETS)}")
            dev = torch.device(device) if device is not None else _default_device()
            model, found, label, loaded_vision = _load(path_or_preset, dev, dtype or _default_dtype(dev),
                                                       random_weights, seed, load_vision)
            vision = vision or loaded_vision
        else:
            label = str(path_or_preset) if path_or_preset is not None else "model"
        if sparse is not None:
            try:
                model.set_sparse(sparse)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.model = model
        self.vision = vision
        """The vision tower and projector, or None for a text-only model (media then raise ConfigError)."""
        self.video_options = video_options or VideoOptions()
        self.image_max_pixels = image_max_pixels
        self.net_policy = net_policy
        self.config: KeyeConfig = model.config
        self.device = model.model.embed_tokens.weight.device
        self.tokenizer = _tokenizer(tokenizer, found, self.config.vocab_size, label)
        self.name = name or f"keye:{label}"
        self.context_window = int(context_window or self.config.max_position_embeddings)
        if not 2 <= self.context_window <= self.config.max_position_embeddings:
            raise ConfigError(f"context_window must be in 2..{self.config.max_position_embeddings} "
                              f"(the model's max_position_embeddings), got {self.context_window}")
        self.constrained = constrained
        self.parallel_tool_calls = parallel_tool_calls
        self.prefix_reuse = prefix_reuse
        self.vocab_size = self.config.vocab_size
        """Width of the logits (the lm_head); ids at or past the tokenizer's vocabulary are never sampled."""
        self.stop_ids = [i for i in self.tokenizer.stop_token_ids if i < self.vocab_size]
        self._valid_vocab = min(self.tokenizer.vocab_size, self.vocab_size)
        if cache_slots < 1:
            raise ConfigError(f"cache_slots must be at least 1, got {cache_slots}")
        self.decode_graph = self.device.type == "cuda" if decode_graph is None else bool(decode_graph)
        """Whether one-token decode steps run through ``DecodeGraph`` (a CUDA graph on CUDA)."""
        self._caches = [PrefixCache(model, self.context_window, decode_graph=self.decode_graph)
                        for _ in range(cache_slots)]
        self._last_use = [0] * cache_slots
        self._calls = 0
        self._lock = threading.Lock()
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        self.engine: BatchEngine | None = None
        """The continuous-batching engine (``max_batch`` > 1), else None."""
        if max_batch > 1:
            try:
                self.engine = BatchEngine(model, max_batch=max_batch, page_size=page_size, cache_tokens=cache_tokens,
                                          max_seq_len=self.context_window, valid_vocab=self._valid_vocab,
                                          prefix_cache=prefix_reuse,
                                          decode_graph=None if decode_graph is None else self.decode_graph)
            except ValueError as e:
                raise ConfigError(f"{self.name}: {e}") from None
        self._grammar: Any = None
        self._media_counts: dict[Any, int] = {}
        self.last_result: DecodeResult | None = None
        """The last generation's ids, finish reason, reused/prefilled token counts and timings (benchmarks)."""

    @classmethod
    def from_preset(cls, preset: str, **kw: Any) -> KeyeBackend:
        """A preset (``keye_agent.model.PRESETS``); pass ``random_weights=True``: presets carry no weights."""
        return cls(preset, **kw)

    @property
    def grammar(self) -> Any:
        """The :class:`~keye_agent.backends.constrained.ToolCallGrammar` of this tokenizer (built on first use)."""
        if self._grammar is None:
            self._grammar = tool_call_grammar(self.tokenizer, self.vocab_size, self.stop_ids)
        return self._grammar

    # ---- prompt ----------------------------------------------------------------------------------------------

    def _chat(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if (self.vision is None and isinstance(m.content, list)
                    and any(not isinstance(p, TextPart) for p in m.content)):
                raise ConfigError(f"{self.name}: messages[{i}] ({m.role}) holds an image or video, and this model has "
                                  "no vision tower (its config.json has no vision_config)",
                                  hint="load a Keye-VL checkpoint with its visual.* weights, use the 'tiny-vl' preset "
                                       "for plumbing, or describe the image in text")
            d: dict[str, Any] = {"role": m.role, "content": message_text(m)}
            if m.tool_calls:
                d["tool_calls"] = [{"id": c.id, "type": "function",
                                    "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
            if m.role == "tool":
                d["tool_call_id"] = m.tool_call_id
                d["name"] = m.name
            out.append(d)
        return out

    def render(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None,
               settings: GenerationSettings | None = None) -> str:
        """The prompt text the model sees, ending with the assistant header."""
        thinking = settings.enable_thinking if settings is not None else None
        try:
            return self.tokenizer.render(self._chat(messages), list(tools) if tools else None,
                                         add_generation_prompt=True, enable_thinking=thinking)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.name}: cannot render the conversation: {e}") from None

    def _render_part(self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        try:
            return self.tokenizer.render(chat, tools, add_generation_prompt=False)
        except ValueError:
            # A shipped template may refuse a lone message (Qwen3's wants a user query); the format is the same.
            return render_qwen3(chat, tools, add_generation_prompt=False)

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> int:
        """Tokens of the rendered messages (and tool list) by the model's tokenizer, without the generation prompt.

        Counted piece by piece (the agent counts one message at a time) the sum can differ from the whole prompt
        by the few tokens where a system message and the tools block share one turn.
        """
        tool_list = list(tools) if tools else None
        if not messages:
            if not tool_list:
                return 0
            probe = [{"role": "user", "content": ""}]
            return (len(self.tokenizer.encode(self._render_part(probe, tool_list)))
                    - len(self.tokenizer.encode(self._render_part(probe, None))))
        text = len(self.tokenizer.encode(self._render_part(self._chat(messages), tool_list)))
        return text + sum(self._media_tokens(it) for it in collect_media(messages))

    def _media_tokens(self, item: MediaItem) -> int:
        """Tokens an image or video adds beyond its one placeholder: its pads exactly for local media (read once
        and kept; a video's timestamp text estimated at 5 tokens a frame), the budget for remote ones (an upper
        bound: counting them would mean fetching them)."""
        key = item.part
        if key not in self._media_counts:
            item = MediaItem(item.kind, item.part, fps=item.fps)
            if not resolve_local(item):
                n = (self.video_options.max_total_tokens if item.kind == "video"
                     else self.image_max_pixels // (28 * 28))
            else:
                inp = self._vision_inputs([item])[0]
                n = inp.num_tokens + (len(inp.grids) * 5 if inp.kind == "video" else 0)
            self._media_counts[key] = max(0, n - 1)
        return self._media_counts[key]

    # ---- generation (the skeleton is LocalBackend's) ---------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def _detokenizer(self) -> IncrementalDecoder:
        return self.tokenizer.decoder()

    async def _inputs(self, messages: Sequence[Message]) -> list[MediaItem]:
        media = collect_media(messages)
        if media:
            await fetch_media(media, self.net_policy)
        return media

    def _decode(self, job: Job, mask: TokenMask | None, cancel: threading.Event,
                on_token: Callable[[int], bool]) -> DecodeResult:
        prompt_ids, prefill, media_key = job.prompt_ids, None, None
        if job.extra:
            mm = self._multimodal_prompt(prompt_ids, job.extra)
            prompt_ids = mm.input_ids
            job.notes.extend(mm.notes)
            self._check_window(len(prompt_ids), "with its images and videos the prompt")

            media_key = (tuple(it.part for it in job.extra), self.video_options, self.image_max_pixels)
            pads = {mm.tokens.image_pad, mm.tokens.video_pad}
            span = 1 + max(i for i, t in enumerate(prompt_ids) if t in pads)

            def prefill(pc: PrefixCache, mm: Any = mm) -> torch.Tensor:
                assert self.vision is not None
                return pc.prefill_embeds(mm.input_ids, embed_prompt(self.model, self.vision, mm), mm.positions,
                                         mm.rope_delta, media_key, span)
        max_new = min(job.settings.max_tokens, self.context_window - len(prompt_ids))
        generator = seeded_generator(self.device, job.settings.seed)
        if self.engine is not None and prefill is None:
            result = self.engine.generate(prompt_ids, max_new, job.sampling, self.stop_ids, mask=mask,
                                          generator=generator, cancel=cancel, on_token=on_token,
                                          reuse=self.prefix_reuse)
            self.last_result = result
            return result
        result = decode(self._pick_cache(prompt_ids), prompt_ids, max_new, job.sampling, self.stop_ids,
                        valid_vocab=self._valid_vocab, reuse=self.prefix_reuse, mask=mask,
                        generator=generator, cancel=cancel,
                        on_token=on_token, prefill=prefill, media_key=media_key)
        self.last_result = result
        return result

    def _serial(self, job: Job) -> AbstractContextManager[Any]:
        """Text jobs of a batching backend run concurrently (the engine batches them); others one at a time, and
        with an engine they pause its batch while they run (one model, one device)."""
        if self.engine is None:
            return self._lock
        if not job.extra:
            return nullcontext()
        stack = ExitStack()
        stack.enter_context(self._lock)
        stack.enter_context(self.engine.exclusive())
        return stack

    def _vision_inputs(self, media: Sequence[MediaItem]) -> list[VisionInput]:
        """Decode, resize and patch each fetched image or video (model.vision)."""
        if self.vision is None:
            raise ConfigError(f"{self.name}: this model has no vision tower for the images and videos given")
        cfg = self.vision.config
        out = []
        for it in media:
            if it.kind == "image":
                out.append(image_input(it.source, cfg, IMAGE_MIN_PIXELS, self.image_max_pixels))
            else:
                opts = self.video_options
                if it.fps:
                    opts = dataclasses.replace(opts, fps=it.fps)
                out.append(video_input(it.source, cfg, opts))
        return out

    def _multimodal_prompt(self, prompt_ids: list[int], media: Sequence[MediaItem]) -> Any:
        tokens = VisionTokens.from_tokenizer(self.tokenizer, self.config)
        try:
            return build_prompt(prompt_ids, self._vision_inputs(media), tokens, self.tokenizer.encode,
                                self.vision.config.spatial_merge_size if self.vision is not None else 2)
        except MediaError:
            raise
        except ValueError as e:  # a placeholder count the template produced differently from the parts
            raise MediaError(f"{self.name}: {e}") from None

    def _pick_cache(self, prompt_ids: list[int]) -> PrefixCache:
        """The slot that continues this conversation (it holds the previous prompt, all but its last few tokens,
        where a re-rendered assistant header may differ), else the least recently used slot."""
        self._calls += 1
        best, best_len = None, -1
        for i, pc in enumerate(self._caches):
            n = common_prefix(pc.ids, prompt_ids)
            if pc.ids and n >= pc.prompt_len - _CONTINUATION_SLACK and n > best_len:
                best, best_len = i, n
        if best is None:
            best = min(range(len(self._caches)), key=self._last_use.__getitem__)
        self._last_use[best] = self._calls
        return self._caches[best]

    def reset_cache(self) -> None:
        """Forget the kept prefixes (the next call prefills its whole prompt); the cache memory stays allocated."""
        with self._lock:
            for pc in self._caches:
                pc.reset()
        if self.engine is not None:
            self.engine.clear_prefix_cache()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _load(spec: str | Path, device: torch.device, dtype: torch.dtype, random_weights: bool, seed: int,
          load_vision: bool = True) -> tuple[KeyeForCausalLM, KeyeTokenizer | None, str, VisionTower | None]:
    """(model, the checkpoint's tokenizer if any, a label for the name, the vision tower if any) for a checkpoint
    directory or a preset."""
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(f"{path} is not a Keye checkpoint: no config.json in it",
                                  hint="point at the directory holding config.json and the *.safetensors shards")
            if random_weights:  # the config and tokenizer of a checkpoint, without reading its weights
                model = build_model(KeyeConfig.from_file(path), device, dtype, random_weights=True, seed=seed)
                tok = KeyeTokenizer.from_dir(path) if (path / "tokenizer.json").is_file() else None
                return model, tok, path.name, _random_tower(model.config, device, dtype, seed, load_vision)
            loaded = load_checkpoint(path, device, dtype, load_vision=load_vision)
            return loaded.model, loaded.tokenizer, path.name, loaded.vision
        name = str(spec)
        check_keye_preset(name, random_weights)
        model = build_model(name, device, dtype, random_weights=True, seed=seed)
        return model, None, name, _random_tower(model.config, device, dtype, seed, load_vision)
    except (ValueError, TypeError) as e:  # the model package raises these, naming the field, tensor and shard
        raise ConfigError(f"cannot load the Keye model from {spec}: {e}") from None


def _random_tower(config: KeyeConfig, device: torch.device, dtype: torch.dtype, seed: int,
                  load_vision: bool) -> VisionTower | None:
    vcfg = tower_config(config) if load_vision else None
    return None if vcfg is None else build_tower(vcfg, device, dtype, random_weights=True, seed=seed + 1)


def _tokenizer(given: KeyeTokenizer | str | Path | None, found: KeyeTokenizer | None, vocab_size: int,
               label: str) -> KeyeTokenizer:
    try:
        if isinstance(given, KeyeTokenizer):
            tok = given
        elif given is not None:
            tok = KeyeTokenizer.from_dir(given)
        elif found is not None:
            tok = found
        elif os.environ.get("KEYE_TOKENIZER"):
            tok = KeyeTokenizer.from_dir(os.environ["KEYE_TOKENIZER"])
        else:
            warnings.warn(f"keye:{label} has no tokenizer: using a stand-in byte-level BPE with the Qwen special "
                          "tokens (plumbing only; set KEYE_TOKENIZER to a directory with the real tokenizer.json)",
                          stacklevel=3)
            tok = plumbing_tokenizer(vocab_size)
    except ValueError as e:
        raise ConfigError(f"cannot load the tokenizer: {e}") from None
    if tok.vocab_size > vocab_size:
        raise ConfigError(f"the tokenizer has {tok.vocab_size} tokens but the model's vocabulary (vocab_size in "
                          f"config.json) has {vocab_size}; they belong to different models")
    if not any(i < vocab_size for i in tok.stop_token_ids):
        raise ConfigError("the tokenizer has no end-of-turn token (<|im_end|>, <|endoftext|> or its eos_token)",
                          hint="use the tokenizer.json of a Qwen3/Keye checkpoint")
    return tok
