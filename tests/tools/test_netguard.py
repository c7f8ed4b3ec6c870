"""The network policy: URL checks on every tricky address form, and a guarded client proven against a real
loopback server (redirects, the address actually connected to).

No DNS is reachable on the test machine, so name resolution is replaced by a resolver hook (``resolve=``) where a
test needs a name to resolve to chosen addresses; everything else is a real socket to a real uvicorn server.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from keye_agent.errors import ConfigError, NetworkPolicyError
from keye_agent.tau.domains.store.api import serve_in_thread
from keye_agent.tools.netguard import NetPolicy, check_url, guarded_async_client, literal_address

DENY = NetPolicy()
LOOPBACK_OK = NetPolicy(allow_loopback=True)

REFUSED_LOOPBACK = [
    "http://127.0.0.1/",
    "http://2130706433/",  # decimal
    "http://0x7f.1/",  # hex, short form
    "http://0x7f000001/",
    "http://0177.0.0.1/",  # octal
    "http://127.1/",  # short form
    "http://127.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:8080/x",
    "http://[::127.0.0.1]/",  # IPv4-compatible IPv6
    "http://0.0.0.0/",  # unspecified: connects to this machine
    "http://0/",
    "http://[::]/",
    "http://localhost/",
    "http://localhost./",
    "http://LocalHost:9000/",
    "http://api.localhost/",
    "https://user:pw@127.0.0.1:443/",
]
REFUSED_PRIVATE = ["http://10.0.0.1/", "http://192.168.1.1/", "http://172.16.5.4/", "http://[fd00::1]/",
                   "http://100.64.0.1/", "http://0xa000001/", "http://[::ffff:10.0.0.1]/", "http://[64:ff9b::a00:1]/"]
REFUSED_LINK_LOCAL = ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://2852039166/"]
ALLOWED_PUBLIC = ["http://93.184.216.34/", "https://example.com/a?b=c", "http://1.1.1.1:8080/",
                  "http://[2606:4700:4700::1111]/", "http://0x5db8d822/", "http://example.com./"]


@pytest.mark.parametrize("url", REFUSED_LOOPBACK)
def test_loopback_forms_refused_and_named(url: str) -> None:
    with pytest.raises(NetworkPolicyError) as ei:
        check_url(url, DENY)
    msg = str(ei.value)
    assert "loopback" in msg and "allow_loopback" in msg
    check_url(url, LOOPBACK_OK)


@pytest.mark.parametrize("url", REFUSED_PRIVATE)
def test_private_forms_refused(url: str) -> None:
    with pytest.raises(NetworkPolicyError, match="allow_private"):
        check_url(url, DENY)
    check_url(url, NetPolicy(allow_private=True))


@pytest.mark.parametrize("url", REFUSED_LINK_LOCAL)
def test_link_local_refused(url: str) -> None:
    with pytest.raises(NetworkPolicyError, match="allow_link_local"):
        check_url(url, NetPolicy(allow_private=True, allow_loopback=True))
    check_url(url, NetPolicy(allow_link_local=True))


@pytest.mark.parametrize("url", ALLOWED_PUBLIC)
def test_public_allowed(url: str) -> None:
    check_url(url, DENY)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)",
                                 "http:///nohost", "http://[::1/"])
def test_bad_scheme_or_url(url: str) -> None:
    with pytest.raises(NetworkPolicyError, match="refused"):
        check_url(url, LOOPBACK_OK)


def test_literal_forms_normalise_to_the_same_address() -> None:
    forms = ["2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "127.1", "127.0.0.1", "017700000001"]
    assert {str(literal_address(f)) for f in forms} == {"127.0.0.1"}
    assert literal_address("example.com") is None
    assert literal_address("256.1.1.1") is None
    assert literal_address("1.2.3.4.5") is None


def test_allowed_hosts_override() -> None:
    check_url("http://LOCALHOST./", NetPolicy(allowed_hosts=frozenset({"localhost"})))
    check_url("http://10.1.2.3/", NetPolicy(allowed_hosts=frozenset({"10.1.2.3"})))


def _app(hits: list[str]) -> Starlette:
    async def ok(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse({"ok": True, "host": request.headers.get("host")})

    async def redirect(request: Request) -> RedirectResponse:
        hits.append(request.url.path)
        return RedirectResponse(request.query_params["to"], status_code=302)

    return Starlette(routes=[Route("/ok", ok), Route("/redirect", redirect)])


@pytest.fixture(scope="module")
def server() -> tuple[str, list[str]]:
    hits: list[str] = []
    with serve_in_thread(_app(hits)) as base:
        yield base, hits


async def _get(policy: NetPolicy, url: str, **kw):  # type: ignore[no-untyped-def]
    async with guarded_async_client(policy, timeout=5, follow_redirects=True, **kw) as client:
        return await client.get(url)


def test_guarded_client_reaches_allowed_loopback(server) -> None:  # type: ignore[no-untyped-def]
    base, _ = server
    r = asyncio.run(_get(LOOPBACK_OK, base + "/ok"))
    assert r.status_code == 200 and r.json()["ok"] is True


def test_guarded_client_refuses_loopback_by_default(server) -> None:  # type: ignore[no-untyped-def]
    base, hits = server
    before = len(hits)
    with pytest.raises(NetworkPolicyError, match="allow_loopback"):
        asyncio.run(_get(DENY, base + "/ok"))
    assert len(hits) == before


def test_redirect_to_disallowed_host_refused(server) -> None:  # type: ignore[no-untyped-def]
    """The first hop is allowed (loopback allowed via allowed_hosts for 127.0.0.1 only); the redirect goes to the
    same server under the name 'localhost', which the policy does not allow: the hop is refused before it is sent."""
    base, hits = server
    port = base.rsplit(":", 1)[1]
    policy = NetPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    before = list(hits)
    with pytest.raises(NetworkPolicyError, match="localhost"):
        asyncio.run(_get(policy, f"{base}/redirect?to=http://localhost:{port}/ok"))
    assert hits[len(before):] == ["/redirect"]


def test_redirect_to_decimal_loopback_refused(server) -> None:  # type: ignore[no-untyped-def]
    base, hits = server
    port = base.rsplit(":", 1)[1]
    policy = NetPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(NetworkPolicyError, match="loopback"):
        asyncio.run(_get(policy, f"{base}/redirect?to=http://2130706433:{port}/ok"))


def test_redirect_allowed_when_policy_allows(server) -> None:  # type: ignore[no-untyped-def]
    base, _ = server
    port = base.rsplit(":", 1)[1]
    r = asyncio.run(_get(LOOPBACK_OK, f"{base}/redirect?to=http://localhost:{port}/ok"))
    assert r.status_code == 200 and r.json()["host"] == f"localhost:{port}"


def test_too_many_redirects(server) -> None:  # type: ignore[no-untyped-def]
    base, _ = server
    loop_url = f"{base}/redirect?to={base}/redirect%3Fto%3D{base}/ok"
    with pytest.raises(httpx.TooManyRedirects):
        asyncio.run(_get(NetPolicy(allow_loopback=True, max_redirects=1), loop_url))


def test_name_resolving_to_private_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    """A public-looking name whose DNS answer is loopback (resolver hook: no DNS here) is refused at connect time."""
    base, hits = server
    port = int(base.rsplit(":", 1)[1])

    async def resolve(host: str, p: int) -> list[str]:
        return ["127.0.0.1"]

    before = len(hits)
    with pytest.raises(NetworkPolicyError, match=r"api\.example\.com.*127\.0\.0\.1"):
        asyncio.run(_get(DENY, f"http://api.example.com:{port}/ok", resolve=resolve))
    assert len(hits) == before
    # allowed explicitly by name: connects to the resolved address, keeps the Host header
    r = asyncio.run(_get(NetPolicy(allowed_hosts=frozenset({"api.example.com"})), f"http://api.example.com:{port}/ok",
                         resolve=resolve))
    assert r.json()["host"] == f"api.example.com:{port}"


def test_mixed_answer_refused(server) -> None:  # type: ignore[no-untyped-def]
    """One DNS answer holding a public and a private address (resolver hook) is refused as a whole."""
    base, hits = server
    port = int(base.rsplit(":", 1)[1])

    async def resolve(host: str, p: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    before = len(hits)
    with pytest.raises(NetworkPolicyError, match="127.0.0.1"):
        asyncio.run(_get(DENY, f"http://rebind.example:{port}/ok", resolve=resolve))
    assert len(hits) == before


def test_rebinding_public_then_private(server) -> None:  # type: ignore[no-untyped-def]
    """DNS rebinding: the name resolves to a public address first and to loopback next (a resolver hook plays the
    attacker's DNS server: no DNS is reachable here). The guard resolves once per connection and connects to the
    address it checked, so the first request goes to the public address (unreachable here: a connect error, never
    our loopback server), and the next resolution, loopback, is refused."""
    base, hits = server
    port = int(base.rsplit(":", 1)[1])
    answers = [["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]]
    calls: list[str] = []

    async def resolve(host: str, p: int) -> list[str]:
        calls.append(host)
        return answers[len(calls) - 1]

    before = len(hits)

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        async with guarded_async_client(DENY, timeout=httpx.Timeout(5, connect=1.0), resolve=resolve) as client:
            first = second = None
            try:
                await client.get(f"http://rebind.example:{port}/ok")
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # the public address is unreachable offline
                first = e
            try:
                await client.get(f"http://rebind.example:{port}/ok")
            except NetworkPolicyError as e:
                second = e
            return first, second

    first, second = asyncio.run(scenario())
    assert first is not None, "the first request should have tried the public address only"
    assert isinstance(second, NetworkPolicyError) and "127.0.0.1" in str(second)
    assert calls[:2] == ["rebind.example", "rebind.example"]
    assert len(hits) == before, "the loopback server must never be reached"


def test_bypassing_kwargs_rejected() -> None:
    with pytest.raises(ConfigError, match="transport"):
        guarded_async_client(DENY, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
