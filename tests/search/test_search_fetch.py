"""fetch_url against a real HTTP server on loopback (the policy allows loopback, nothing else): HTML, JSON, PDF,
a redirect chain, redirects to private and link-local addresses, a slow response, a huge one, wrong charsets.

DNS cannot be reached from the test machine, so where a test needs a host name to resolve to a chosen address it
passes a resolver hook (``resolve=``); every connection is a real socket.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from keye_agent.errors import NetworkPolicyError, ToolExecutionError
from keye_agent.search import Fetcher, make_fetch_url
from keye_agent.tools import ToolRegistry, load_builtin
from keye_agent.tools.netguard import NetPolicy
from keye_agent.types import ToolCall

LOOPBACK = NetPolicy(allow_loopback=True)

ARTICLE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Keye-VL 2.0 notes</title></head><body>"
    "<nav><a href='/'>Home</a> | <a href='/blog'>Blog</a></nav><main><article><h1>Keye-VL 2.0</h1>"
    "<p>Keye-VL 2.0 is a <b>multimodal</b> mixture-of-experts model with 30B parameters, 3B active per token.</p>"
    "<h2>Attention</h2><ul><li>DeepSeek Sparse Attention</li><li>a lightning indexer</li></ul>"
    "<p>Long videos fit into its context because each query reads only its top-k keys.</p></article></main>"
    "<footer>© 2026 example</footer><script>var tracking = 1;</script></body></html>"
)
RUSSIAN = "Привет, мир! Это длинный текст на русском языке, чтобы определить кодировку без ошибок. " * 4


def fetch(url: str, **kw) -> object:
    return asyncio.run(Fetcher(kw.pop("policy", LOOPBACK), **kw).fetch(url))


def test_html_becomes_readable_markdown(server) -> None:
    server.routes["/article"] = lambda h: server.send(h, 200, ARTICLE.encode(), "text/html; charset=utf-8")
    page = fetch(server.url("/article"))
    assert page.kind == "html" and page.title == "Keye-VL 2.0 notes" and page.status == 200
    assert "# Keye-VL 2.0" in page.text and "**multimodal**" in page.text and "- DeepSeek Sparse Attention" in page.text
    assert "tracking" not in page.text and "Home" not in page.text  # boilerplate and scripts dropped


def test_json_is_pretty_printed(server) -> None:
    payload = {"model": "Keye-VL-2.0", "experts": 128, "tags": ["moe", "dsa"]}
    server.routes["/api"] = lambda h: server.send(h, 200, json.dumps(payload).encode(), "application/json")
    page = fetch(server.url("/api"))
    assert page.kind == "json" and json.loads(page.text) == payload and '\n  "experts": 128' in page.text


def test_pdf_becomes_text(server, pdf_bytes) -> None:
    body = pdf_bytes(["Annual report 2026.", "Revenue grew by 12 percent."], title="Annual report")
    server.routes["/report.pdf"] = lambda h: server.send(h, 200, body, "application/pdf")
    page = fetch(server.url("/report.pdf"))
    assert page.kind == "pdf" and page.title == "Annual report" and "Revenue grew by 12 percent." in page.text


def test_pdf_served_as_octet_stream_is_sniffed(server, pdf_bytes) -> None:
    body = pdf_bytes(["Sniffed by its magic bytes."])
    server.routes["/file"] = lambda h: server.send(h, 200, body, "application/octet-stream")
    assert "Sniffed by its magic bytes." in fetch(server.url("/file")).text


def test_redirect_chain_is_followed_and_recorded(server) -> None:
    server.routes["/a"] = lambda h: server.send(h, 301, b"", None, {"Location": "/b"})
    server.routes["/b"] = lambda h: server.send(h, 302, b"", None, {"Location": server.url("/c")})
    server.routes["/c"] = lambda h: server.send(h, 307, b"", None, {"Location": "article"})
    server.routes["/article"] = lambda h: server.send(h, 200, ARTICLE.encode(), "text/html")
    page = fetch(server.url("/a"))
    assert page.final_url == server.url("/article")
    assert page.redirects == [server.url("/a"), server.url("/b"), server.url("/c")]
    assert "Keye-VL 2.0" in page.text


def test_redirect_loop_stops_at_the_limit(server) -> None:
    server.routes["/loop"] = lambda h: server.send(h, 302, b"", None, {"Location": "/loop"})
    with pytest.raises(ToolExecutionError, match="redirected more than 3 times"):
        fetch(server.url("/loop"), policy=NetPolicy(allow_loopback=True, max_redirects=3))
    assert server.hits["/loop"] == 4


@pytest.mark.parametrize("target,kind", [
    ("http://10.0.0.7/admin", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:10.0.0.1]/", "private"),
])
def test_redirect_to_a_private_address_is_refused(server, target: str, kind: str) -> None:
    server.routes["/go"] = lambda h: server.send(h, 302, b"", None, {"Location": target})
    with pytest.raises(NetworkPolicyError, match=kind):
        fetch(server.url("/go"))


def test_redirect_to_a_name_resolving_to_a_private_address_is_refused(server) -> None:
    server.routes["/go"] = lambda h: server.send(h, 302, b"", None, {"Location": "http://intranet.example/"})

    async def resolve(host: str, port: int) -> list[str]:
        return ["192.168.10.20"] if host == "intranet.example" else []

    with pytest.raises(NetworkPolicyError, match="private"):
        fetch(server.url("/go"), resolve=resolve)


def test_loopback_itself_is_refused_by_the_default_policy(server) -> None:
    server.routes["/article"] = lambda h: server.send(h, 200, ARTICLE.encode(), "text/html")
    with pytest.raises(NetworkPolicyError, match="allow_loopback"):
        fetch(server.url("/article"), policy=NetPolicy())
    assert "/article" not in server.hits
    with pytest.raises(NetworkPolicyError, match="scheme"):
        fetch("file:///etc/passwd")


def test_slow_response_times_out_as_transient(server) -> None:
    def slow(h) -> None:
        server.stop.wait(10)
        server.send(h, 200, b"late", "text/plain")

    server.routes["/slow"] = slow
    with pytest.raises(ToolExecutionError) as ei:
        fetch(server.url("/slow"), timeout_s=0.5)
    assert ei.value.transient and "0.5 s" in str(ei.value)


def test_dripping_response_is_cut_by_the_total_deadline(server) -> None:
    def drip(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(1000):  # one byte every 50 ms: each read is fast, the whole is not
            h.wfile.write(b"x")
            h.wfile.flush()
            if server.stop.wait(0.05):
                return

    server.routes["/drip"] = drip
    with pytest.raises(ToolExecutionError, match="took longer than 1 s") as ei:
        fetch(server.url("/drip"), timeout_s=1.0)
    assert ei.value.transient


def test_huge_response_is_capped(server) -> None:
    chunk = b"A line of a very long log file that never ends.\n" * 1000
    total = 50 * len(chunk)

    def huge(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(total))
        h.end_headers()
        for _ in range(50):
            h.wfile.write(chunk)

    server.routes["/huge"] = huge
    page = fetch(server.url("/huge"), max_bytes=100_000)
    assert page.truncated_bytes and page.bytes_read == 100_000 and len(page.text) == 100_000
    tool = make_fetch_url(allow_loopback=True, max_bytes=100_000)
    text = asyncio.run(tool.fn(url=server.url("/huge"), max_chars=500))
    assert "[truncated: showing the first 500 of 100000 characters]" in text
    assert "only its first 100000 bytes were read" in text


def test_wrong_declared_charset_is_detected(server) -> None:
    server.routes["/ru"] = lambda h: server.send(h, 200, RUSSIAN.encode("cp1251"), "text/plain; charset=utf-8")
    page = fetch(server.url("/ru"))
    assert page.text == RUSSIAN and page.encoding == "cp1251"


def test_utf8_labelled_latin1_is_read_as_utf8(server) -> None:
    body = "Café au lait, naïve façade, Zürich — 東京".encode()
    server.routes["/latin"] = lambda h: server.send(h, 200, body, "text/plain; charset=iso-8859-1")
    page = fetch(server.url("/latin"))
    assert page.text == body.decode("utf-8") and page.encoding == "utf-8"


def test_html_meta_charset_without_header_charset(server) -> None:
    html = "<html><head><meta charset='gbk'><title>快手</title></head><body><p>可灵是快手的视频生成模型。</p></body></html>"
    server.routes["/zh"] = lambda h: server.send(h, 200, html.encode("gbk"), "text/html")
    page = fetch(server.url("/zh"))
    assert page.title == "快手" and "可灵是快手的视频生成模型" in page.text


def test_http_errors_say_status_and_transience(server) -> None:
    server.routes["/busy"] = lambda h: server.send(h, 503, b"busy", "text/plain", {"Retry-After": "7"})
    with pytest.raises(ToolExecutionError, match="HTTP 503") as ei:
        fetch(server.url("/busy"))
    assert ei.value.transient and ei.value.retry_after == 7
    with pytest.raises(ToolExecutionError, match="HTTP 404") as ei:
        fetch(server.url("/missing"))
    assert not ei.value.transient


def test_binary_content_is_refused(server) -> None:
    server.routes["/img"] = lambda h: server.send(h, 200, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png")
    with pytest.raises(ToolExecutionError, match="binary"):
        fetch(server.url("/img"))


def test_fetch_url_tool_through_the_registry(server) -> None:
    server.routes["/article"] = lambda h: server.send(h, 200, ARTICLE.encode(), "text/html; charset=utf-8")
    server.routes["/go"] = lambda h: server.send(h, 302, b"", None, {"Location": "http://10.1.2.3/"})
    tool = load_builtin("fetch_url", network={"allow_loopback": True}, max_chars=5000)
    registry = ToolRegistry([tool])
    ok, refused, bad = registry.dispatch_sync([
        ToolCall(id="1", name="fetch_url", arguments={"url": server.url("/article")}),
        ToolCall(id="2", name="fetch_url", arguments={"url": server.url("/go")}),
        ToolCall(id="3", name="fetch_url", arguments={"url": server.url("/article"), "max_chars": 10}),
    ])
    assert ok.ok and ok.content.startswith(f"URL: {server.url('/article')}\nTitle: Keye-VL 2.0 notes")
    assert not refused.ok and refused.error_type == "NetworkPolicyError" and "10.1.2.3" in refused.error
    assert refused.attempts == 1  # a policy refusal is not retried
    assert not bad.ok and bad.error_type == "ToolValidationError"


def test_transient_failures_are_retried_by_the_registry(server) -> None:
    calls = {"n": 0}

    def flaky(h) -> None:
        calls["n"] += 1
        if calls["n"] < 3:
            server.send(h, 502, b"bad gateway", "text/plain")
        else:
            server.send(h, 200, b"third time lucky", "text/plain")

    server.routes["/flaky"] = flaky
    registry = ToolRegistry([make_fetch_url(allow_loopback=True)], backoff_base_s=0.01, backoff_max_s=0.02)
    [res] = registry.dispatch_sync([ToolCall(id="1", name="fetch_url", arguments={"url": server.url("/flaky")})])
    assert res.ok and "third time lucky" in res.content and res.attempts == 3
