"""Bad input gets OpenAI's error object with a 4xx that names the parameter, and the server goes on serving the
others: malformed JSON, unknown roles, a tool schema that is not JSON Schema, n > 1, bad tool choices, a body past
the limit (413), a prompt past the context window, a full queue (429 with Retry-After), a missing or wrong key
(401); a client that disconnects cancels its generation. Raw HTTP (httpx) and the openai SDK's error classes."""

from __future__ import annotations

import httpx
import openai
import pytest
from serve_fixtures import MODEL, WEATHER, serving, wait_idle

HI = [{"role": "user", "content": "hi"}]


def _post(api: str, body, **kw) -> httpx.Response:
    if isinstance(body, dict | list):
        return httpx.post(api + "/chat/completions", json=body, timeout=120, **kw)
    return httpx.post(api + "/chat/completions", content=body, timeout=120,
                      headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)


def _error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


def _ok(api: str) -> None:
    r = _post(api, {"model": MODEL, "messages": HI, "max_tokens": 2})
    assert r.status_code == 200, r.text


BAD = [
    # (body, param the error names)
    ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": [{"role": "function", "content": "hi", "name": "f"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL}, "messages"),
    ({"messages": HI}, "model"),
    ({"model": MODEL, "messages": HI, "n": 2}, "n"),
    ({"model": MODEL, "messages": HI, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "strng"}}}}}]},
     "tools[0].function.parameters.properties.x.type"),
    ({"model": MODEL, "messages": HI, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "required": "x"}}}]}, "tools[0].function.parameters.required"),
    ({"model": MODEL, "messages": HI, "tools": [{"type": "function", "function": {"name": "has space"}}]},
     "tools[0].function.name"),
    ({"model": MODEL, "messages": HI, "tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"model": MODEL, "messages": HI, "tool_choice": "required"}, "tool_choice"),
    ({"model": MODEL, "messages": HI, "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": MODEL, "messages": HI, "tools": [WEATHER],
      "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice"),
    ({"model": MODEL, "messages": HI, "temperature": 3}, "temperature"),
    ({"model": MODEL, "messages": HI, "top_p": 0}, "top_p"),
    ({"model": MODEL, "messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": HI, "max_tokens": "ten"}, "max_tokens"),
    ({"model": MODEL, "messages": HI, "stop": [1, 2]}, "stop"),
    ({"model": MODEL, "messages": HI, "stream": "yes"}, "stream"),
    ({"model": MODEL, "messages": HI, "logprobs": True}, "logprobs"),
    ({"model": MODEL, "messages": HI, "frequency_penalty": 0.5}, "frequency_penalty"),
    ({"model": MODEL, "messages": HI, "response_format": {"type": "json_object"}}, "response_format"),
    ({"model": MODEL, "messages": [{"role": "tool", "content": "4 C"}]}, "messages[0].tool_call_id"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages[0].content[0].type"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}, "messages[0].content[0].image_url.url"),
    ({"model": MODEL, "messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
]


@pytest.mark.parametrize(("body", "param"), BAD, ids=[p for _, p in BAD])
def test_a_bad_parameter_is_a_400_naming_it(api, body, param):
    err = _error(_post(api, body), 400, param)
    assert err["type"] == "invalid_request_error" and param.split("[")[0].split(".")[0] in err["message"]


def test_malformed_json_and_a_non_object_body_are_400s(api):
    err = _error(_post(api, b'{"model": "tiny", "messages": [}'), 400)
    assert err["code"] == "invalid_json" and "not valid JSON" in err["message"]
    _error(_post(api, b"[1, 2]"), 400)
    _ok(api)


def test_an_unknown_model_and_route_are_404s(api):
    assert _error(_post(api, {"model": "gpt-4", "messages": HI}), 404, "model")["code"] == "model_not_found"
    assert _error(httpx.get(api + "/completions"), 404)["message"].startswith("no route")
    assert _error(httpx.get(api + "/chat/completions"), 405)


def test_a_prompt_over_the_context_window_is_a_400_streamed_or_not(api, tiny):
    long = [{"role": "user", "content": "many words here " * tiny.context_window}]
    for stream in (False, True):
        err = _error(_post(api, {"model": MODEL, "messages": long, "stream": stream}), 400, "messages")
        assert err["code"] == "context_length_exceeded" and "context window" in err["message"]
    _ok(api)


def test_the_sdk_raises_its_own_error_classes(api):
    client = openai.OpenAI(base_url=api, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=HI, n=3)
    assert e.value.param == "n" and e.value.status_code == 400
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI)


def test_the_server_keeps_serving_after_every_bad_request(api):
    for body, _ in BAD:
        _post(api, body)
    _ok(api)


def test_a_body_over_the_limit_is_a_413(tiny):
    with serving(tiny, max_body_bytes=2048) as api:
        big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 4096}]}
        assert _error(_post(api, big), 413)["code"] == "request_too_large"

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 512
            yield b'"}]}'
        assert _error(_post(api, chunks()), 413)["code"] == "request_too_large"
        _ok(api)


def test_a_key_is_required_when_set(tiny, monkeypatch):
    with serving(tiny, api_key="s3cret-serving-key") as api:
        assert _error(_post(api, {"model": MODEL, "messages": HI}), 401)["code"] == "invalid_api_key"
        _error(_post(api, {"model": MODEL, "messages": HI}, headers={"Authorization": "Bearer wrong"}), 401)
        _error(httpx.get(api + "/models"), 401)
        assert httpx.get(api.removesuffix("/v1") + "/health").status_code == 200  # probes need no key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=api, api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=api, api_key="s3cret-serving-key", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2).choices


def test_a_full_queue_is_a_429_with_retry_after_and_a_disconnect_cancels(tiny):
    """With room for one request, a second one is refused while the first streams; the first client then goes
    away mid-stream, which cancels its generation (asked for 8000 tokens, it would hold the model for minutes), and
    the next request is served."""
    with serving(tiny, max_queue=1, retry_after_s=2) as api:
        body = {"model": MODEL, "messages": HI, "max_tokens": 8000, "temperature": 0, "stream": True}
        with httpx.Client(timeout=120) as c, c.stream("POST", api + "/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            seen = [next(lines) for _ in range(6)]  # the role chunk and some text: the model is generating
            assert all(s.startswith("data: ") or not s for s in seen)
            refused = _post(api, {"model": MODEL, "messages": HI, "max_tokens": 2})
            err = _error(refused, 429)
            assert refused.headers["retry-after"] == "2" and err["code"] == "rate_limit_exceeded"
            with pytest.raises(openai.RateLimitError):
                openai.OpenAI(base_url=api, api_key="x", max_retries=0).chat.completions.create(
                    model=MODEL, messages=HI, max_tokens=2)
        health = wait_idle(api)
        assert health["active"] == 0 and health["refused"] == 2
        last = getattr(tiny, "last_result", None)
        if last is not None:  # the Keye backend reports how its last generation ended
            assert last.finish_reason == "cancelled" and len(last.token_ids) < 8000
        _ok(api)


def test_a_client_that_gives_up_on_a_whole_answer_cancels_it(tiny):
    with serving(tiny) as api:
        body = {"model": MODEL, "messages": HI, "max_tokens": 8000, "temperature": 0}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(api + "/chat/completions", json=body, timeout=httpx.Timeout(120, read=3))
        assert wait_idle(api)["active"] == 0
        last = getattr(tiny, "last_result", None)
        if last is not None:
            assert last.finish_reason == "cancelled"
        _ok(api)
