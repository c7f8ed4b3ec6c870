"""The tokenizer of a Keye checkpoint (tokenizers library) with its chat template, and streaming detokenisation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keye_agent.model.chat_template import render_jinja, render_qwen3

__all__ = ["IncrementalDecoder", "KeyeTokenizer"]

# Turn and document ends of the Qwen vocabulary; any of them present stops generation.
_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _token_str(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


class KeyeTokenizer:
    """Encode, decode and render chats for a Keye checkpoint.

    ``chat_template`` is the checkpoint's Jinja template when it ships one; otherwise our Qwen3 renderer is used.
    """

    def __init__(self, tokenizer: Any, chat_template: str | None = None, bos_token: str | None = None,
                 eos_token: str | None = None) -> None:
        self._tok = tokenizer
        self.chat_template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token
        stops = [t for t in ((eos_token,) + _STOP_TOKENS) if t]
        ids = [self._tok.token_to_id(t) for t in stops]
        self.stop_token_ids: list[int] = sorted({i for i in ids if i is not None})
        """Ids that end an assistant turn (eos, <|im_end|>, <|endoftext|>, those the vocabulary has)."""

    @classmethod
    def from_dir(cls, path: str | Path) -> KeyeTokenizer:
        """Load tokenizer.json and tokenizer_config.json (and chat_template.jinja / .json when present)."""
        from tokenizers import Tokenizer

        root = Path(path)
        tok_file = root / "tokenizer.json"
        if not tok_file.is_file():
            raise ValueError(f"no tokenizer.json in {root}")
        try:
            tok = Tokenizer.from_file(str(tok_file))
        except Exception as e:  # the tokenizers library raises plain Exception subclasses for bad files
            raise ValueError(f"{tok_file}: cannot be read by the tokenizers library: {e}") from e
        config: dict[str, Any] = {}
        cfg_file = root / "tokenizer_config.json"
        if cfg_file.is_file():
            try:
                config = json.loads(cfg_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{cfg_file} is not valid JSON: line {e.lineno}: {e.msg}") from None
        template = cls._find_template(root, config)
        return cls(tok, template, _token_str(config.get("bos_token")), _token_str(config.get("eos_token")))

    @staticmethod
    def _find_template(root: Path, config: Mapping[str, Any]) -> str | None:
        jinja_file = root / "chat_template.jinja"
        if jinja_file.is_file():
            return jinja_file.read_text(encoding="utf-8")
        template = config.get("chat_template")
        json_file = root / "chat_template.json"
        if template is None and json_file.is_file():
            template = json.loads(json_file.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
            template = named.get("default") or named.get("tool_use") or next(iter(named.values()), None)
        if template is not None and not isinstance(template, str):
            raise ValueError(f"{root}: chat_template must be a string or a list of named templates")
        return template

    # -- tokens ---------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary, added tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens written in the text map to their ids, nothing is added around."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    # -- chat -----------------------------------------------------------------------------------------------------
    def render(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
               add_generation_prompt: bool = True, enable_thinking: bool | None = None) -> str:
        """The prompt text of a conversation: the checkpoint's template if shipped, else our Qwen3 renderer."""
        if self.chat_template is not None:
            return render_jinja(self.chat_template, messages, tools, add_generation_prompt,
                                enable_thinking=enable_thinking, bos_token=self.bos_token, eos_token=self.eos_token)
        return render_qwen3(messages, tools, add_generation_prompt, enable_thinking)

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                    add_generation_prompt: bool = True, enable_thinking: bool | None = None) -> list[int]:
        """Token ids of ``render(...)``."""
        return self.encode(self.render(messages, tools, add_generation_prompt, enable_thinking))

    def decoder(self, skip_special_tokens: bool = False) -> IncrementalDecoder:
        """A streaming decoder: feed ids one at a time, get text deltas."""
        return IncrementalDecoder(self, skip_special_tokens)


class IncrementalDecoder:
    """Turns a stream of token ids into text deltas without splitting multi-byte characters.

    Decodes a short window of recent ids and emits the new suffix once it no longer ends in an incomplete
    character (shown by the tokenizer as U+FFFD).
    """

    def __init__(self, tokenizer: KeyeTokenizer, skip_special_tokens: bool = False) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix_offset = 0  # ids before this are settled and out of the window
        self._read_offset = 0  # ids before this have been emitted

    def feed(self, token_id: int) -> str:
        """Add one id; return the text that became final (possibly "")."""
        self._ids.append(int(token_id))
        prefix = self._tok.decode(self._ids[self._prefix_offset:self._read_offset], self._skip)
        full = self._tok.decode(self._ids[self._prefix_offset:], self._skip)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix):]
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        prefix = self._tok.decode(self._ids[self._prefix_offset:self._read_offset], self._skip)
        full = self._tok.decode(self._ids[self._prefix_offset:], self._skip)
        self._prefix_offset = self._read_offset = len(self._ids)
        return full[len(prefix):]
