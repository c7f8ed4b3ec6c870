"""Fetch a URL and turn it into text a model can read.

httpx through the shared network guard (:mod:`keye_agent.tools.netguard`): private, loopback and link-local
addresses are refused unless the policy allows them, on the URL and on the address actually connected to. Redirects
are followed here, hop by hop, each one checked and counted. The body is streamed and cut at ``max_bytes`` (after
content decoding, so a compressed bomb stops there too) and the whole fetch has a wall-clock deadline, since
per-read timeouts alone let a server drip bytes forever.
"""

from __future__ import annotations

import asyncio
import email.message
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from keye_agent.errors import NetworkPolicyError, ToolExecutionError
from keye_agent.retry import parse_retry_after
from keye_agent.tools.decoding import ACCEPT_ENCODING, DecodingError, read_decoded
from keye_agent.tools.netguard import NetPolicy, Resolver, check_url, guarded_async_client

from .extract import Extracted, decode_bytes, html_to_text, json_to_text, pdf_to_text, sniff_html_charset

_REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_USER_AGENT = "keye-agent/0.1 (+https://github.com/Kwai-Keye; fetch_url tool)"


@dataclass
class FetchedPage:
    """What a fetch produced: the readable text and how it was obtained."""

    url: str
    final_url: str
    status: int
    content_type: str
    text: str
    title: str = ""
    kind: str = "text"
    encoding: str | None = None
    redirects: list[str] = field(default_factory=list)
    bytes_read: int = 0
    truncated_bytes: bool = False
    """The body was longer than ``max_bytes`` and was cut there."""


def _content_type(header: str | None) -> tuple[str, str | None]:
    """(media type lower-cased, charset or None) from a Content-Type header."""
    if not header:
        return "", None
    msg = email.message.Message()
    msg["content-type"] = header
    return msg.get_content_type().lower(), msg.get_param("charset")  # type: ignore[return-value]


def to_text(data: bytes, content_type: str, charset: str | None, url: str) -> Extracted:
    """Readable text of a body by its media type, sniffing the bytes when the type is missing or generic."""
    is_pdf = content_type == "application/pdf" or data[:5] == b"%PDF-"
    if is_pdf:
        return pdf_to_text(data)
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    if content_type.startswith(("image/", "audio/", "video/", "font/")) or (b"\x00" in data[:2048] and not utf16):
        raise ToolExecutionError(
            f"cannot read {url}: content type {content_type!r} is binary, not text",
            tool="fetch_url",
        )
    head = data[:1024].lstrip().lower()
    looks_html = head.startswith((b"<!doctype html", b"<html")) or b"<body" in head
    if content_type in ("text/html", "application/xhtml+xml") or (looks_html and not content_type.startswith("text/plain")):
        html, enc = decode_bytes(data, charset or sniff_html_charset(data))
        ex = html_to_text(html, url)
        ex.encoding = enc
        return ex
    text, enc = decode_bytes(data, charset)
    if content_type == "application/json" or content_type.endswith("+json"):
        ex = json_to_text(text)
    else:
        ex = Extracted(text=text, kind="text")
    ex.encoding = enc
    return ex


class Fetcher:
    """Fetches pages under a network policy.

    Args:
        policy: which addresses may be reached (default: public ones only).
        timeout_s: wall-clock limit of the whole fetch, redirects included.
        connect_timeout_s: limit for opening one connection.
        max_bytes: the body is cut after this many (decoded) bytes.
        user_agent: the User-Agent header.
        resolve: replaces DNS resolution (tests); see :func:`keye_agent.tools.netguard.guarded_async_client`.
    """

    def __init__(
        self,
        policy: NetPolicy | None = None,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_bytes: int = 5 * 2**20,
        user_agent: str = DEFAULT_USER_AGENT,
        resolve: Resolver | None = None,
    ) -> None:
        self.policy = policy or NetPolicy()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.resolve = resolve

    async def fetch(self, url: str) -> FetchedPage:
        """Fetch ``url``; raises NetworkPolicyError (refused), ToolExecutionError (HTTP error, timeout, unreadable;
        ``transient`` set where a retry may help)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise ToolExecutionError(
                f"fetching {url} took longer than {self.timeout_s:g} s", tool="fetch_url", transient=True
            ) from None

    async def _fetch(self, url: str) -> FetchedPage:
        check_url(url, self.policy)
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
        headers = {"User-Agent": self.user_agent, "Accept": "text/html,application/xhtml+xml,application/json,"
                   "application/pdf,text/plain;q=0.9,*/*;q=0.5",
                   "Accept-Encoding": ACCEPT_ENCODING}  # only what read_decoded decodes under its cap
        redirects: list[str] = []
        current = url
        async with guarded_async_client(
            self.policy, timeout=timeout, headers=headers, follow_redirects=False, resolve=self.resolve
        ) as client:
            while True:
                check_url(current, self.policy)
                try:
                    async with client.stream("GET", current) as resp:
                        if resp.status_code in _REDIRECTS and resp.headers.get("location"):
                            if len(redirects) >= self.policy.max_redirects:
                                raise ToolExecutionError(
                                    f"{url} redirected more than {self.policy.max_redirects} times "
                                    f"(last hop: {current})", tool="fetch_url",
                                )
                            redirects.append(current)
                            current = urljoin(str(resp.url), resp.headers["location"])
                            continue
                        self._check_status(resp, current)
                        data, truncated = await self._read(resp)
                        media, charset = _content_type(resp.headers.get("content-type"))
                        final_url = str(resp.url)
                        status = resp.status_code
                except NetworkPolicyError:
                    raise
                except httpx.TimeoutException as e:
                    raise ToolExecutionError(
                        f"timed out fetching {current} ({type(e).__name__})", tool="fetch_url", transient=True
                    ) from None
                except httpx.TransportError as e:
                    raise ToolExecutionError(
                        f"cannot fetch {current}: {type(e).__name__}: {e}", tool="fetch_url", transient=True
                    ) from None
                break
        if truncated and (media == "application/pdf" or data[:5] == b"%PDF-"):
            raise ToolExecutionError(
                f"{final_url}: the PDF is larger than the {self.max_bytes} byte cap and cannot be read in part",
                tool="fetch_url",
            )
        ex = to_text(data, media, charset, final_url)
        return FetchedPage(
            url=url, final_url=final_url, status=status, content_type=media or "(none)", text=ex.text, title=ex.title,
            kind=ex.kind, encoding=ex.encoding, redirects=redirects, bytes_read=len(data), truncated_bytes=truncated,
        )

    @staticmethod
    def _check_status(resp: httpx.Response, url: str) -> None:
        status = resp.status_code
        if status < 400:
            return
        reason = resp.reason_phrase or ""
        if status == 429 or status >= 500:
            raise ToolExecutionError(
                f"{url} answered HTTP {status} {reason}".rstrip(), tool="fetch_url", transient=True,
                retry_after=parse_retry_after(resp.headers.get("retry-after")),
            )
        raise ToolExecutionError(f"{url} answered HTTP {status} {reason}".rstrip(), tool="fetch_url")

    async def _read(self, resp: httpx.Response) -> tuple[bytes, bool]:
        # decoded layer by layer under the cap as the raw bytes arrive: httpx's own decoder (aiter_bytes) turns
        # 1 KB of "gzip, gzip" into 1 GB in one step, before any cap could look
        try:
            return await read_decoded(resp, self.max_bytes)
        except DecodingError as e:
            raise ToolExecutionError(f"cannot read {resp.url}: {e}", tool="fetch_url") from None


def render_page(page: FetchedPage, max_chars: int) -> str:
    """The text the model reads: a short header (URL, redirects, title, type) then the content, cut at
    ``max_chars`` with a note saying how much was left out."""
    lines = [f"URL: {page.final_url}"]
    if page.redirects:
        lines.append(f"Redirected from: {page.url} ({len(page.redirects)} hop(s))")
    if page.title:
        lines.append(f"Title: {page.title}")
    lines.append(f"Content-Type: {page.content_type}" + (f" (read as {page.encoding})" if page.encoding else ""))
    body = page.text.strip() or "(the page has no readable text)"
    notes = []
    if len(body) > max_chars:
        notes.append(f"[truncated: showing the first {max_chars} of {len(body)} characters]")
        body = body[:max_chars]
    if page.truncated_bytes:
        notes.append(f"[the response was larger than the download cap; only its first {page.bytes_read} bytes were read]")
    return "\n".join(lines) + "\n\n" + body + ("\n\n" + "\n".join(notes) if notes else "")
