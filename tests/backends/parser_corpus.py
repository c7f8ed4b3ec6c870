"""Malformed (and a few well-formed) model outputs with their expected parse, written by hand.

Each case names where output of that kind was seen: a public issue or pull-request thread (found with the
search tool; the output below is our own instance of the kind the thread shows, not a copy of it).
``calls`` lists (name, arguments) or (id, name, arguments); ``errors`` lists one substring per expected error;
``note`` says how the instance differs from what the thread shows, where it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    output: str
    text: str = ""
    reasoning: str | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""


CORPUS: list[Case] = [
    # --- Python literals, quotes, commas, comments ---------------------------------------------------------
    Case(
        "python-dict-single-quotes",
        "https://github.com/waybarrios/vllm-mlx/issues/63",
        "<tool_call>\n{'name': 'search', 'arguments': {'query': ['python', 'tutorial'], 'lang': 'en'}}\n</tool_call>",
        calls=[("search", {"query": ["python", "tutorial"], "lang": "en"})],
    ),
    Case(
        "python-true-false-none",
        "https://github.com/waybarrios/vllm-mlx/pull/64",
        '<tool_call>\n{"name": "set_config", "arguments": {"dark": True, "compact": False, "font": None}}\n'
        "</tool_call>",
        calls=[("set_config", {"dark": True, "compact": False, "font": None})],
    ),
    Case(
        "mixed-quotes-in-list",
        "https://github.com/QwenLM/qwen-code/issues/288",
        '<tool_call>\n{"name": "read_many_files", "arguments": {"paths": [\'app.py\', "utils.py"]}}\n</tool_call>',
        calls=[("read_many_files", {"paths": ["app.py", "utils.py"]})],
    ),
    Case(
        "apostrophe-inside-single-quoted-string",
        "https://github.com/waybarrios/vllm-mlx/issues/63",
        "<tool_call>\n{'name': 'write_note', 'arguments': {'text': 'it\\'s done', 'tags': ('a', 'b')}}\n</tool_call>",
        calls=[("write_note", {"text": "it's done", "tags": ["a", "b"]})],
    ),
    Case(
        "trailing-commas",
        "https://github.com/huggingface/chat-ui/pull/1229",
        '<tool_call>\n{"name": "websearch", "arguments": {"query": "weather in Paris", "max_results": 3,},}\n'
        "</tool_call>",
        calls=[("websearch", {"query": "weather in Paris", "max_results": 3})],
    ),
    Case(
        "hash-comments",
        "https://github.com/FoundationAgents/MetaGPT/issues/733",
        '<tool_call>\n{"name": "install", "arguments": {\n  "packages": ["numpy", "sqlite3"]  # sqlite3 ships '
        'with Python\n}}\n</tool_call>',
        calls=[("install", {"packages": ["numpy", "sqlite3"]})],
    ),
    Case(
        "slash-comments-and-trailing-comma",
        "https://github.com/FoundationAgents/MetaGPT/pull/799",
        '<tool_call>\n{\n  "name": "create_file",\n  "arguments": {\n    "path": "notes.md", // relative to the '
        'workspace\n    /* keep it short */ "content": "# Notes",\n  },\n}\n</tool_call>',
        calls=[("create_file", {"path": "notes.md", "content": "# Notes"})],
    ),
    Case(
        "literal-backslash-n-between-tokens",
        "https://github.com/OpenHands/software-agent-sdk/issues/2488",
        r'<tool_call>{"name": "str_replace_editor", "arguments": {"command": "view", "path": "/w/query.py", '
        r'"view_range": \n[2142, 2250]\n\n}}</tool_call>',
        calls=[("str_replace_editor", {"command": "view", "path": "/w/query.py", "view_range": [2142, 2250]})],
    ),
    Case(
        "raw-newlines-inside-string",
        "https://github.com/MoonshotAI/kimi-cli/pull/1460",
        '<tool_call>\n{"name": "python", "arguments": {"code": "for i in range(3):\n    print(i)"}}\n</tool_call>',
        calls=[("python", {"code": "for i in range(3):\n    print(i)"})],
    ),
    # --- arguments in the wrong shape ----------------------------------------------------------------------
    Case(
        "arguments-as-json-string",
        "https://github.com/vllm-project/vllm/pull/54964",
        '<tool_call>{"name": "get_db_config", "arguments": "{\\n  \\"param\\": \\"max_connections\\"\\n}"}'
        "</tool_call>",
        calls=[("get_db_config", {"param": "max_connections"})],
    ),
    Case(
        "arguments-as-json-string-qwen25",
        "https://github.com/FoundationAgents/OpenManus/pull/989",
        '<tool_call>\n{"name": "sales_data", "arguments": "{\\"shop_name\\": \\"A店\\", \\"start_date\\": '
        '\\"2025-03-23\\"}"}\n</tool_call>',
        calls=[("sales_data", {"shop_name": "A店", "start_date": "2025-03-23"})],
    ),
    Case(
        "parameters-instead-of-arguments",
        "https://github.com/ahwurm/localharness/issues/104",
        '<tool_call>{"name": "write_file", "parameters": {"path": "a.txt", "content": "hello"}}</tool_call>',
        calls=[("write_file", {"path": "a.txt", "content": "hello"})],
    ),
    Case(
        "parameters-as-json-string",
        "https://github.com/ollama/ollama/pull/12413",
        '<tool_call>\n{"name": "get_time", "parameters": "{\\"timezone\\": \\"UTC\\"}"}\n</tool_call>',
        calls=[("get_time", {"timezone": "UTC"})],
    ),
    Case(
        "name-only-call",
        "https://github.com/ai-dynamo/frontend-crates/pull/63",
        '<tool_call>\n{"name": "get_current_time"}\n</tool_call>',
        calls=[("get_current_time", {})],
    ),
    Case(
        "arguments-not-json",
        "https://github.com/run-llama/llama_index/issues/11921",
        '<tool_call>\n{"name": "python", "arguments": "query = \\"\\"\\"print(1)\\"\\"\\""}\n</tool_call>',
        errors=["call to 'python': arguments are not valid JSON"],
    ),
    Case(
        "flattened-arguments",
        "https://github.com/openclaw/openclaw/pull/96127",
        '<tool_call>\n{"name": "run_command", "command": "ls -la", "cwd": "/tmp"}\n</tool_call>',
        calls=[("run_command", {"command": "ls -la", "cwd": "/tmp"})],
    ),
    Case(
        "tool-calls-wrapper-fenced",
        "https://github.com/TheBadFella/CatGPT/issues/83",
        '```\n{"tool_calls":[{"name":"bash","arguments":{"command":"du -sh * | sort -h"}}]}\n```',
        calls=[("bash", {"command": "du -sh * | sort -h"})],
    ),
    Case(
        "tool-calls-wrapper-missing-brace",
        "https://github.com/FANATFANATA/DanyAPI/pull/3",
        '{"tool_calls": [{"name": "Edit", "arguments": {"path": "/file.py"}]}',
        calls=[("Edit", {"path": "/file.py"})],
    ),
    Case(
        "missing-brace-before-bracket-in-arguments",
        "https://github.com/ranxianglei/billion-context-pi/issues/253",
        '<tool_call>\n{"name": "compress", "arguments": {"content": [{"startId": "m1", "endId": "m9", "summary": '
        '"saved at /tmp/c.json."]}}\n</tool_call>',
        calls=[("compress", {"content": [{"startId": "m1", "endId": "m9", "summary": "saved at /tmp/c.json."}]})],
    ),
    Case(
        "json-preamble-then-tagged-call",
        "https://github.com/3-ark/Cognito-AI_Sidekick/issues/47",
        '{"tool_name": "memory.update", "tool_arguments": {"summary": "saved the note"}}\n<tool_call>\n{"name": '
        '"memory.update", "arguments": {"summary": "saved the note"}}\n</tool_call>',
        text='{"tool_name": "memory.update", "tool_arguments": {"summary": "saved the note"}}',
        calls=[("memory.update", {"summary": "saved the note"})],
    ),
    # --- brackets and tags ---------------------------------------------------------------------------------
    Case(
        "extra-closing-brace",
        "https://github.com/yigit353/langchain-qwq/issues/30",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Hangzhou"}}}\n</tool_call>',
        calls=[("get_weather", {"city": "Hangzhou"})],
    ),
    Case(
        "missing-closing-brace-before-close-tag",
        "https://github.com/ranxianglei/billion-context-pi/issues/253",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Hangzhou"}\n</tool_call>',
        calls=[("get_weather", {"city": "Hangzhou"})],
    ),
    Case(
        "two-objects-in-one-block",
        "https://github.com/vllm-project/vllm/issues/17790",
        '<tool_call>\n{"name": "search", "arguments": {"q": "qwen3"}}\n{"name": "search", "arguments": '
        '{"q": "vllm"}}\n</tool_call>',
        calls=[("search", {"q": "qwen3"}), ("search", {"q": "vllm"})],
    ),
    Case(
        "list-of-calls-in-one-block",
        "https://github.com/Blaizzy/mlx-vlm/pull/2132",
        '<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", '
        '"arguments": {"city": "Rome"}}]\n</tool_call>',
        calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})],
    ),
    Case(
        "unclosed-tags-several-calls",
        "https://github.com/ggml-org/llama.cpp/issues/12153",
        '<tool_call>\n{"name": "create_plan", "arguments": {"id": "plan"}}\n<tool_call>\n{"name": "add_step", '
        '"arguments": {"id": "1", "fn": "add", "args": {"a": 5, "b": 5}}}\n<tool_call>\n{"name": "add_step", '
        '"arguments": {"id": "2", "fn": "sub", "args": {"a": "$add.result", "b": 1}}}\n</tool_call>',
        calls=[
            ("create_plan", {"id": "plan"}),
            ("add_step", {"id": "1", "fn": "add", "args": {"a": 5, "b": 5}}),
            ("add_step", {"id": "2", "fn": "sub", "args": {"a": "$add.result", "b": 1}}),
        ],
    ),
    Case(
        "unclosed-tag-at-end",
        "https://github.com/ai-dynamo/dynamo/pull/10445",
        'I will check the weather.\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "NYC"}}',
        text="I will check the weather.",
        calls=[("get_weather", {"location": "NYC"})],
    ),
    Case(
        "close-tag-inside-argument-string",
        "https://github.com/vllm-project/vllm/issues/45167",
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "doc.md", "content": "end a call with '
        '</tool_call>"}}\n</tool_call>',
        calls=[("write_file", {"path": "doc.md", "content": "end a call with </tool_call>"})],
    ),
    Case(
        "close-tag-inside-string-then-second-call",
        "https://github.com/minpeter/ai-sdk-tool-call-middleware/issues/297",
        '<tool_call>{"name":"bash","arguments":{"cmd":"echo </tool_call> test"}}</tool_call>\n'
        '<tool_call>{"name":"bash","arguments":{"cmd":"ls"}}</tool_call>',
        calls=[("bash", {"cmd": "echo </tool_call> test"}), ("bash", {"cmd": "ls"})],
    ),
    Case(
        "braces-inside-string-argument",
        "https://github.com/vllm-project/vllm/issues/21544",
        '<tool_call>\n{"name": "run_shell_command", "arguments": {"command": "mkdir -p test/{test1,test2"}}\n'
        "</tool_call>",
        calls=[("run_shell_command", {"command": "mkdir -p test/{test1,test2"})],
    ),
    Case(
        "truncated-mid-arguments",
        "https://github.com/vllm-project/vllm/pull/46303",
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "README.md", "content": "# Title\\n\\nThe '
        "first sec",
        errors=["<tool_call> block 1 is cut off: a string opened at offset"],
    ),
    Case(
        "truncated-after-complete-call",
        "https://github.com/ahwurm/localharness/issues/77",
        '<tool_call>\n{"name": "ls", "arguments": {"path": "."}}\n</tool_call>\n<tool_call>\n{"name": "write", '
        '"arguments": {"path": "nb.ipynb", "content": {"cells": [',
        calls=[("ls", {"path": "."})],
        errors=["<tool_call> block 2 is cut off: 4 bracket(s) still open"],
    ),
    Case(
        "empty-block",
        "https://github.com/ai-dynamo/frontend-crates/pull/63",
        "Let me look that up.\n<tool_call>\n</tool_call>",
        text="Let me look that up.",
        errors=["<tool_call> block 1 is empty"],
    ),
    Case(
        "one-bad-block-among-good-ones",
        "https://github.com/Neroued/ninfer/issues/158",
        '<tool_call>\n{"name": "read", "arguments": {"path": "a.txt"}}\n</tool_call>\n<tool_call>\n{"name": '
        '"read", "arguments": {"path" "b.txt"}}\n</tool_call>\n<tool_call>\n{"name": "read", "arguments": '
        '{"path": "c.txt"}}\n</tool_call>',
        calls=[("call_0", "read", {"path": "a.txt"}), ("call_1", "read", {"path": "c.txt"})],
        errors=["<tool_call> block 2: invalid JSON at line 1 column 39: Expecting ':' delimiter"],
    ),
    Case(
        "prose-in-block-not-json",
        "https://github.com/xorbitsai/inference/issues/2477",
        "<tool_call>\nI need to call the weather tool for Paris.\n</tool_call>",
        errors=["<tool_call> block 1 does not contain a JSON object; it starts 'I need to call"],
    ),
    # --- code fences ---------------------------------------------------------------------------------------
    Case(
        "fence-inside-tags",
        "https://github.com/ardanlabs/kronk/pull/950",
        '<tool_call>\n```json\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n```\n</tool_call>',
        calls=[("get_weather", {"location": "Paris"})],
        note="the thread shows Qwen2.5-Coder fencing its call envelope; here the fence sits inside the tags",
    ),
    Case(
        "fence-around-tags",
        "https://github.com/ardanlabs/kronk/pull/950",
        'Checking now.\n```xml\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n'
        "</tool_call>\n```",
        text="Checking now.",
        calls=[("get_weather", {"location": "Paris"})],
        note="the thread shows the fenced envelope without tags; here the fence wraps the tagged call",
    ),
    Case(
        "fenced-example-followed-by-prose-is-not-a-call",
        "https://github.com/vllm-project/vllm/issues/57541",
        'A call looks like this:\n\n```xml\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n'
        "</tool_call>\n```\n\nThat is the format.",
        text='A call looks like this:\n\n```xml\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n'
        "</tool_call>\n```\n\nThat is the format.",
    ),
    Case(
        "inline-code-mention-is-not-a-call",
        "https://github.com/agentscope-ai/QwenPaw/issues/4066",
        "Wrap each call in `<tool_call>` tags and put the arguments in a JSON object.",
        text="Wrap each call in `<tool_call>` tags and put the arguments in a JSON object.",
    ),
    # --- no tags at all ------------------------------------------------------------------------------------
    Case(
        "bare-json-call",
        "https://github.com/nicedreamzapp/claude-code-local/pull/43",
        '{\n  "name": "Bash",\n  "arguments": {\n    "command": "ls /tmp",\n    "description": "List /tmp"\n  }\n}',
        calls=[("Bash", {"command": "ls /tmp", "description": "List /tmp"})],
    ),
    Case(
        "bare-json-call-ollama",
        "https://github.com/Gitlawb/openclaude/issues/433",
        '{\n  "name": "WebSearch",\n  "arguments": {\n    "query": "repository structure"\n  }\n}\n',
        calls=[("WebSearch", {"query": "repository structure"})],
    ),
    Case(
        "fenced-bare-json-call",
        "https://github.com/ardanlabs/kronk/pull/950",
        '```json\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n```',
        calls=[("get_weather", {"location": "Paris"})],
    ),
    Case(
        "openai-shaped-bare-call",
        "https://github.com/vllm-project/vllm/issues/11786",
        '{"type": "function", "function": {"name": "get_current_traffic", "parameters": {"location": "Sydney"}}}',
        calls=[("get_current_traffic", {"location": "Sydney"})],
    ),
    Case(
        "fenced-data-json-is-not-a-call",
        "https://github.com/ahwurm/localharness/issues/105",
        '```json\n{"name": "my-app", "version": "1.0.0"}\n```',
        text='```json\n{"name": "my-app", "version": "1.0.0"}\n```',
    ),
    Case(
        "json-list-of-people-is-not-a-call",
        "https://github.com/itayinbarr/little-coder/issues/96",
        '[{"name": "alice", "age": 30}, {"name": "bob", "age": 31}]',
        text='[{"name": "alice", "age": 30}, {"name": "bob", "age": 31}]',
    ),
    Case(
        "prose-then-json-is-not-a-call",
        "https://github.com/Open-Orca-AI/openorca/issues/98",
        'The log line was {"name": "worker", "arguments": {"retries": 3}} and nothing else.',
        text='The log line was {"name": "worker", "arguments": {"retries": 3}} and nothing else.',
    ),
    Case(
        "plain-prose-answer",
        "https://github.com/xorbitsai/inference/issues/3136",
        "The customer had 3 orders last year:\n\n1. 2-DOV, amount -240.0\n2. 2-D3J, amount 0.0\n3. 2-KlG, "
        "amount 240.0",
        text="The customer had 3 orders last year:\n\n1. 2-DOV, amount -240.0\n2. 2-D3J, amount 0.0\n3. 2-KlG, "
        "amount 240.0",
    ),
    # --- reasoning -----------------------------------------------------------------------------------------
    Case(
        "empty-think-then-call",
        "https://github.com/lmstudio-ai/lmstudio-bug-tracker/issues/825",
        '<think>\n\n</think>\n\n<tool_call>\n{"name": "search_products", "arguments": {"query": "Dell", '
        '"category": "electronics", "max_price": 50}}\n</tool_call>',
        calls=[("search_products", {"query": "Dell", "category": "electronics", "max_price": 50})],
    ),
    Case(
        "think-prose-and-two-calls",
        "https://github.com/hiyouga/LlamaFactory/issues/9522",
        "<think>\nThe user asks about the weather in New York and Beijing.\n</think>\n\nI'll check both cities."
        '\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "New York", "unit": "celsius"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "Beijing", "unit": '
        '"celsius"}}\n</tool_call>',
        text="I'll check both cities.",
        reasoning="The user asks about the weather in New York and Beijing.",
        calls=[
            ("get_weather", {"location": "New York", "unit": "celsius"}),
            ("get_weather", {"location": "Beijing", "unit": "celsius"}),
        ],
    ),
    Case(
        "think-then-call-lmstudio",
        "https://github.com/lmstudio-ai/lmstudio-bug-tracker/issues/827",
        '<think>\nI should use the time tool.\n</think>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n'
        "</tool_call>",
        reasoning="I should use the time tool.",
        calls=[("get_time", {})],
    ),
    Case(
        "bare-close-think-no-opener",
        "https://github.com/sigoden/aichat/issues/1528",
        "The user wants a haiku about rain.\n</think>\n\nSoft rain on the roof",
        text="Soft rain on the roof",
        reasoning="The user wants a haiku about rain.",
    ),
    Case(
        "empty-think-then-json-answer",
        "https://github.com/QwenLM/Qwen3/issues/1396",
        '<think>\n\n</think>\n\n{"sentiment": "positive", "score": 0.93}',
        text='{"sentiment": "positive", "score": 0.93}',
    ),
    Case(
        "empty-think-with-no-think-mode",
        "https://github.com/xorbitsai/inference/issues/3647",
        "<think>\n\n</think>\n\nParis is the capital of France.",
        text="Paris is the capital of France.",
    ),
    Case(
        "unclosed-think-then-call",
        "https://github.com/ggml-org/llama.cpp/issues/21118",
        '<think>\nI need to list the files first.\n<tool_call>\n{"name": "list_dir", "arguments": {"path": '
        '"src"}}\n</tool_call>',
        reasoning="I need to list the files first.",
        calls=[("list_dir", {"path": "src"})],
    ),
    Case(
        "unclosed-think-truncated",
        "https://github.com/ggml-org/llama.cpp/pull/13931",
        "<think>\nLet me think about the integral. First substitute u = x^2, then",
        reasoning="Let me think about the integral. First substitute u = x^2, then",
    ),
    Case(
        "mock-call-inside-closed-think-is-not-run",
        "https://github.com/ggml-org/llama.cpp/pull/13931",
        '<think>\nI could call <tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call> but I '
        "already know.\n</think>\n\nThe answer is 42.",
        text="The answer is 42.",
        reasoning='I could call <tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call> but I '
        "already know.",
    ),
    Case(
        "tool-syntax-discussed-in-reasoning-then-real-call",
        "https://github.com/lmstudio-ai/lmstudio-bug-tracker/issues/1592",
        "<think>\nSome models write <function=...>, others <tool_call>; I will use the JSON form.\n</think>\n"
        '<tool_call>\n{"name": "web_search", "arguments": {"query": "tool call formats"}}\n</tool_call>',
        reasoning="Some models write <function=...>, others <tool_call>; I will use the JSON form.",
        calls=[("web_search", {"query": "tool call formats"})],
    ),
    Case(
        "call-only-inside-think-with-empty-answer",
        "https://github.com/QwenLM/qwen-code/issues/6548",
        '<think>\nCall the tool.\n<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n</tool_call>\n'
        "</think>\n\n",
        reasoning='Call the tool.\n<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n</tool_call>',
        errors=["the only <tool_call> is inside <think>...</think>"],
    ),
    # --- the XML variants of Qwen3-Coder / Qwen3.5 ---------------------------------------------------------
    Case(
        "xml-function-parameter",
        "https://github.com/ollama/ollama/issues/14745",
        "Thinking: I need to find the Valkey initialisation.\n<tool_call>\n<function=bash>\n<parameter=command>"
        '\ngrep -rn "valkey" src | head -20\n</parameter>\n<parameter=description>\nFind Valkey '
        "initialisation\n</parameter>\n</function>\n</tool_call>",
        text="Thinking: I need to find the Valkey initialisation.",
        calls=[("bash", {"command": 'grep -rn "valkey" src | head -20', "description": "Find Valkey initialisation"})],
    ),
    Case(
        "xml-function-prose-before",
        "https://github.com/vllm-project/vllm/issues/22975",
        "Let me grep for the implementation.\n\n<tool_call>\n<function=GrepTool>\n<parameter=pattern>\nclass "
        "BaseService\\(\n</parameter>\n<parameter=path>\n.\n</parameter>\n</function>\n</tool_call>",
        text="Let me grep for the implementation.",
        calls=[("GrepTool", {"pattern": "class BaseService\\(", "path": "."})],
    ),
    Case(
        "function-tag-then-bare-json",
        "https://github.com/madroidmaq/mlx-omni-server/issues/126",
        'Let me check the services...\n<tool_call>\n<function>terminal</function>\n{"command": "lsof -i :10240"}'
        "\n</tool_call>",
        text="Let me check the services...",
        calls=[("terminal", {"command": "lsof -i :10240"})],
    ),
    Case(
        "parameter-without-function",
        "https://github.com/QwenLM/qwen-code/issues/783",
        "<tool_call>\n<parameter=absolute_path>\n/src/app.py\n</parameter>\n</tool_call>",
        errors=["<tool_call> block 1 has <parameter=...> but no <function=NAME>"],
    ),
    Case(
        "parameter-tag-where-function-belongs",
        "https://github.com/antirez/ds4/pull/1050",
        "<tool_call>\n<parameter=bash>\n<parameter=command>\nls\n</parameter>\n</function>\n</tool_call>",
        errors=["<tool_call> block 1 has <parameter=...> but no <function=NAME>: the tool name goes in"],
    ),
    # --- well-formed baselines from the same threads ------------------------------------------------------
    Case(
        "well-formed-non-ascii",
        "https://github.com/QwenLM/Qwen3-VL/issues/1674",
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "杭州"}}\n</tool_call>',
        calls=[("get_current_weather", {"location": "杭州"})],
    ),
    Case(
        "nested-non-ascii-arguments",
        "https://github.com/vllm-project/vllm/issues/19056",
        '<tool_call>\n{"name": "summary", "arguments": {"outline": [{"h2": "背景", "guideline": "历程"}, '
        '{"h2": "突破", "guideline": "对比"}]}}\n</tool_call>',
        calls=[("summary", {"outline": [{"h2": "背景", "guideline": "历程"}, {"h2": "突破", "guideline": "对比"}]})],
    ),
]
