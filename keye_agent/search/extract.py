"""Bytes to readable text: charset detection, HTML to markdown-ish text (trafilatura), PDF to text (pypdf), JSON.

Shared by `fetch_url` (pages from the web) and the offline corpus (files on disk), so both read a document the same
way.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from dataclasses import dataclass

from keye_agent.errors import SearchError

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Labels under which servers commonly send UTF-8 by mistake: every byte string decodes in them, so a clean decode
# proves nothing; a body that is also valid multi-byte UTF-8 is almost surely UTF-8.
_SINGLE_BYTE_DEFAULTS = frozenset({"iso8859-1", "cp1252", "ascii"})  # codecs.lookup() names


@dataclass
class Extracted:
    """Readable text of a document, with what was learnt on the way."""

    text: str
    title: str = ""
    kind: str = "text"
    """html, json, pdf or text."""
    encoding: str | None = None
    canonical_url: str | None = None


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        return codecs.lookup(label.strip().strip("'\"")).name
    except LookupError:
        return None


def sniff_html_charset(data: bytes) -> str | None:
    """The charset a page declares in its ``<meta>`` (looked for in the first 4 KiB, as browsers do)."""
    m = _META_CHARSET.search(data[:4096])
    return _codec(m.group(1).decode("ascii", "replace")) if m else None


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, encoding used). Trusts a byte-order mark, then the declared charset when the bytes agree with it, then
    valid UTF-8, then charset-normalizer's guess; never fails (undecodable bytes become U+FFFD)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data.decode(name, errors="replace"), name
    declared = _codec(declared)
    if declared:
        try:
            text = data.decode(declared)
        except UnicodeDecodeError:
            pass  # the label is wrong: fall through to detection
        else:
            if declared in _SINGLE_BYTE_DEFAULTS:
                try:
                    utf8 = data.decode("utf-8")
                except UnicodeDecodeError:
                    return text, declared
                if utf8 != text:
                    return utf8, "utf-8"
            return text, declared
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None:
        return str(best), best.encoding
    return data.decode("utf-8", errors="replace"), "utf-8"


def html_title(html: str) -> str:
    m = _TITLE.search(html[:200_000])
    if not m:
        return ""
    import html as html_lib

    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", m.group(1))).split())


def _canonical_link(html: str) -> str | None:
    from lxml import html as lxml_html
    from lxml.etree import ParserError

    try:
        tree = lxml_html.fromstring(html[:500_000])
    except (ParserError, ValueError):
        return None
    for xpath in ('//link[@rel="canonical"]/@href', '//meta[@property="og:url"]/@content'):
        found = tree.xpath(xpath)
        if found and str(found[0]).startswith(("http://", "https://")):
            return str(found[0]).strip()
    return None


def html_to_text(html: str, url: str | None = None) -> Extracted:
    """Main content of a page as markdown-ish text (headings, lists, tables, emphasis), boilerplate dropped.

    Falls back to all visible text when trafilatura finds no main content (tiny pages, app shells).
    """
    import trafilatura

    title = html_title(html)
    text = trafilatura.extract(
        html, url=url, output_format="markdown", include_tables=True, include_links=False, include_comments=False,
        include_formatting=True, favor_recall=True,
    )
    if not text:
        from lxml import html as lxml_html
        from lxml.etree import ParserError

        try:
            tree = lxml_html.fromstring(html)
            for bad in tree.xpath("//script|//style|//noscript|//template"):
                bad.drop_tree()
            text = "\n".join(line.strip() for line in tree.text_content().splitlines() if line.strip())
        except (ParserError, ValueError):
            text = ""
    return Extracted(text=text.strip(), title=title, kind="html", canonical_url=_canonical_link(html))


def pdf_to_text(data: bytes) -> Extracted:
    """Text of every page of a PDF, pages separated by a blank line; a SearchError when it cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as e:  # noqa: BLE001 - pypdf raises several types for a password it cannot open
                raise SearchError("the PDF is encrypted and cannot be read without its password") from e
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        meta = reader.metadata
        title = str(meta.title) if meta is not None and meta.title else ""
    except (PdfReadError, ValueError, KeyError, TypeError) as e:
        raise SearchError(f"the PDF cannot be read: {type(e).__name__}: {e}") from e
    text = "\n\n".join(p for p in pages if p)
    return Extracted(text=text, title=title, kind="pdf")


def json_to_text(text: str) -> Extracted:
    """Pretty-printed JSON (so the model sees the structure); the raw text when it does not parse."""
    try:
        value = json.loads(text)
    except ValueError:
        return Extracted(text=text, kind="text")
    return Extracted(text=json.dumps(value, indent=2, ensure_ascii=False), kind="json")
