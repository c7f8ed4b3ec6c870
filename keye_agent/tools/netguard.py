"""Network policy for tools that fetch URLs: refuse private, loopback and link-local addresses unless allowed.

Two layers, because a check on the URL alone is not enough:

* :func:`check_url` looks at the URL: scheme, and the host when it is an address written in any of the forms
  ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``), IPv6 (``[::1]``,
  ``[::ffff:127.0.0.1]``) or a local name (``localhost``, ``localhost.``, ``*.localhost``).
* :func:`guarded_async_client` gives an ``httpx.AsyncClient`` whose connections resolve the name once, check every
  address it resolved to, and connect to the checked address itself (TLS still verifies the original name, and the
  Host header is unchanged). A name that resolves to a public address when checked and to a private one when
  connected (DNS rebinding) cannot slip through, because there is no second resolution. Every redirect hop is
  checked again before it is sent.

Example::

    policy = NetPolicy(allow_loopback=True)
    async with guarded_async_client(policy, timeout=10) as client:
        r = await client.get("http://127.0.0.1:8000/health")
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from keye_agent.errors import ConfigError, NetworkPolicyError

__all__ = ["NetPolicy", "Resolver", "check_ip", "check_url", "guarded_async_client", "normalize_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``async resolve(host, port) -> [address, ...]``; the default uses the event loop's ``getaddrinfo``."""

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True)
class NetPolicy:
    """Which addresses a tool may connect to. The default allows only public (globally routable) addresses."""

    allow_private: bool = False
    """Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) and every other non-global range (CGNAT, test nets)."""
    allow_loopback: bool = False
    """127/8, ::1, the unspecified address 0.0.0.0 / :: (which connects to this machine) and ``localhost``."""
    allow_link_local: bool = False
    """169.254/16 (cloud metadata services live there) and fe80::/10."""
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Host names or addresses allowed whatever they resolve to (compared case-insensitively, without a final dot)."""
    max_redirects: int = 5

    def allows_host(self, host: str) -> bool:
        h = normalize_host(host)
        return any(normalize_host(a) == h for a in self.allowed_hosts)


def normalize_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or a final dot (``Example.COM.`` -> ``example.com``)."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return h.rstrip(".") if h not in ("", ".") else h


def _parse_ipv4_part(part: str) -> int | None:
    if not part:
        return None
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the forms C's ``inet_aton`` accepts (and so ``getaddrinfo`` and many URL parsers): one to four parts,
    each decimal, octal (leading 0) or hex (0x); the last part fills the remaining bytes (``127.1``)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_parse_ipv4_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums: list[int] = [v for v in values if v is not None]
    *head, last = nums
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for v in head:
        value = value * 256 + v
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The address a host string denotes when it is an IP literal in any accepted form, else None."""
    h = normalize_host(host)
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])  # a zone id (%eth0) does not change the class
        except ValueError:
            return None
    return _legacy_ipv4(h)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    NAT64 (64:ff9b::/96) and 6to4 (2002::/16)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[12:])
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def _classify(ip: IPAddress) -> str | None:
    """None for a global address, else the policy class: 'loopback', 'link-local' or 'private'."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return _classify(inner)
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or not ip.is_global:
        return "private"
    return None


_HOW = {
    "loopback": ("a loopback address (this machine)", "allow_loopback"),
    "link-local": ("a link-local address (cloud metadata services live there)", "allow_link_local"),
    "private": ("a private or non-public address", "allow_private"),
}


def _refuse(host: str, what: str, flag: str, url: str | None, addr: IPAddress | None = None) -> NetworkPolicyError:
    shown = f"host {host!r}" + (f" (= {addr})" if addr is not None and normalize_host(host) != str(addr) else "")
    target = f"{url!r}: {shown}" if url else shown
    return NetworkPolicyError(
        f"refused {target} is {what}",
        hint=f"set {flag}=True in the network policy (YAML: `network: {{{flag}: true}}`) or add {host!r} to "
        "allowed_hosts if this tool may reach it",
    )


def check_ip(ip: str | IPAddress, policy: NetPolicy, *, host: str | None = None, url: str | None = None) -> None:
    """Raise :class:`NetworkPolicyError` unless ``policy`` allows connecting to the address ``ip``."""
    addr = ip if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) else ipaddress.ip_address(
        str(ip).split("%", 1)[0]
    )
    kind = _classify(addr)
    if kind is None:
        return
    what, flag = _HOW[kind]
    if getattr(policy, flag):
        return
    raise _refuse(host if host is not None else str(addr), what, flag, url, addr)


def check_url(url: str, policy: NetPolicy) -> None:
    """Check a URL before any connection: http/https only, and a literal or local host must be allowed.

    Host names are not resolved here (see :func:`guarded_async_client`, which checks the address connected to).
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise NetworkPolicyError(f"refused {str(url)!r}: not a valid URL ({e})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise NetworkPolicyError(
            f"refused {str(url)!r}: scheme {parts.scheme or '(none)'!r} is not allowed",
            hint="only http:// and https:// URLs can be fetched",
        )
    if not host:
        raise NetworkPolicyError(f"refused {str(url)!r}: the URL has no host")
    if policy.allows_host(host):
        return
    h = normalize_host(host)
    if h in _LOCAL_NAMES or h.endswith(".localhost"):
        if not policy.allow_loopback:
            raise _refuse(host, "a loopback name (this machine)", "allow_loopback", str(url))
        return
    addr = literal_address(h)
    if addr is not None:
        check_ip(addr, policy, host=host, url=str(url))


async def _default_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, connects to a checked address (the original name stays for TLS/Host)."""

    def __init__(self, policy: NetPolicy, resolve: Resolver | None) -> None:
        self._policy = policy
        self._resolve = resolve or _default_resolve
        self._inner = httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> list[str]:
        h = normalize_host(host)
        literal = literal_address(h)
        if literal is not None:
            if not self._policy.allows_host(h):
                check_ip(literal, self._policy, host=host)
            return [str(literal)]
        check_url(f"http://{h}/", self._policy)  # local names (localhost.) never reach the resolver unchecked
        try:
            addrs = await self._resolve(h, port)
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {e}") from e
        if not addrs:
            raise httpcore.ConnectError(f"{host!r} resolved to no address")
        if not self._policy.allows_host(host):
            for a in addrs:  # every address: a mixed answer is refused rather than raced
                check_ip(a, self._policy, host=host)
        return addrs

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for addr in await self._addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    addr, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise NetworkPolicyError(f"refused a Unix socket connection to {path!r}: the network policy allows TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    # loading the CA bundle costs ~50 ms; a context is safe to share between clients
    return httpx.create_ssl_context(verify=verify, trust_env=False)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a pool whose network backend is the guard.

    httpx offers no way to pass a network backend, so this sets the pool ``AsyncHTTPTransport`` sends through
    (its one attribute) instead of calling its constructor, which would build a second, unguarded pool.
    """

    def __init__(self, policy: NetPolicy, resolve: Resolver | None, *, verify: Any = True, http2: bool = False,
                 limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        ctx = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ctx,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=_GuardedBackend(policy, resolve),
        )


def guarded_async_client(policy: NetPolicy, *, resolve: Resolver | None = None, **httpx_kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that connects only where ``policy`` allows.

    ``httpx_kwargs`` go to the client (timeout, headers, follow_redirects...), except ``transport``/``mounts``/
    ``proxy`` which would bypass the guard. ``resolve`` replaces DNS resolution (tests; custom resolvers).
    Environment proxies are ignored (``trust_env=False``): a proxy would connect on our behalf, unchecked.
    A refused URL raises :class:`NetworkPolicyError` from the request call.
    """
    for bad in ("transport", "mounts", "proxy", "app", "uds"):
        if bad in httpx_kwargs:
            raise ConfigError(f"guarded_async_client does not accept {bad!r}: it would bypass the network policy")
    transport = _GuardedTransport(
        policy, resolve, verify=httpx_kwargs.pop("verify", True), http2=httpx_kwargs.pop("http2", False),
        limits=httpx_kwargs.pop("limits", None),
    )

    async def _check_request(request: httpx.Request) -> None:
        check_url(str(request.url), policy)

    hooks = dict(httpx_kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [_check_request, *hooks.get("request", [])]
    httpx_kwargs.setdefault("max_redirects", policy.max_redirects)
    httpx_kwargs["trust_env"] = False
    return httpx.AsyncClient(transport=transport, event_hooks=hooks, **httpx_kwargs)
