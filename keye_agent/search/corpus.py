"""A folder of documents (text, markdown, HTML, PDF) read into titled, URL-bearing passages for the offline index.

Each document gets a URL to cite: the one it declares (markdown/text front matter ``url:``, an HTML
``<link rel="canonical">`` or ``og:url``), else its ``file://`` URI. Files that cannot be read are listed in
``Corpus.skipped`` with the reason, never dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from keye_agent.errors import ConfigError, SearchError

from .extract import decode_bytes, html_to_text, pdf_to_text, sniff_html_charset

SUFFIXES = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".xhtml": "html", ".pdf": "pdf",
}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass
class Document:
    """One file of the corpus, as readable text."""

    path: Path
    url: str
    title: str
    text: str
    mtime: float
    kind: str


@dataclass
class Corpus:
    """The documents under ``root`` and the files that could not be read (path, reason)."""

    root: Path
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _front_matter(text: str) -> tuple[dict[str, object], str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[m.end():]


def load_document(path: Path) -> Document:
    """Read one file by its suffix; a SearchError when it cannot be read."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SearchError(f"{path.name}: unsupported file type {path.suffix!r} (use {', '.join(sorted(SUFFIXES))})")
    data = path.read_bytes()
    mtime = path.stat().st_mtime
    url, title = path.resolve().as_uri(), ""
    if kind == "pdf":
        ex = pdf_to_text(data)
        text, title = ex.text, ex.title
    elif kind == "html":
        html, _ = decode_bytes(data, sniff_html_charset(data))
        ex = html_to_text(html)
        text, title = ex.text, ex.title
        url = ex.canonical_url or url
    else:
        raw, _ = decode_bytes(data)
        meta, text = _front_matter(raw)
        if isinstance(meta.get("url"), str) and str(meta["url"]).startswith(("http://", "https://")):
            url = str(meta["url"])
        title = str(meta.get("title") or "")
        if not title and kind == "markdown":
            h = _HEADING.search(text)
            title = h.group(1) if h else ""
    if not title:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        title = first[:80] if len(first) <= 80 else path.stem
    return Document(path=path, url=url, title=title.strip(), text=text.strip(), mtime=mtime, kind=kind)


FileStamp = tuple[str, int, int]
"""(path, size, mtime in ns): what identifies one version of a file."""


def corpus_files(root: Path, max_file_bytes: int) -> tuple[list[FileStamp], list[tuple[str, str]]]:
    """Supported files under ``root`` (hidden ones skipped) with their size and mtime, sorted by path, and the
    files left out (too large, unreadable). One ``stat`` per file: this runs before searches to spot changes."""
    files: list[FileStamp] = []
    skipped: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in SUFFIXES:
                continue
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError as e:
                skipped.append((p, f"cannot stat: {e.strerror}"))
                continue
            if st.st_size > max_file_bytes:
                skipped.append((p, f"{st.st_size} bytes is over max_file_bytes={max_file_bytes}"))
                continue
            files.append((p, st.st_size, st.st_mtime_ns))
    return files, skipped


def load_corpus(root: str | os.PathLike[str], *, max_file_bytes: int = 20 * 2**20) -> Corpus:
    """Read every supported file under ``root``."""
    path = Path(root).expanduser()
    if not path.exists():
        raise ConfigError(f"the offline corpus folder {str(path)!r} does not exist", hint="pass an existing folder")
    if not path.is_dir():
        raise ConfigError(f"the offline corpus {str(path)!r} is not a folder", hint="pass the folder that holds it")
    files, skipped = corpus_files(path, max_file_bytes)
    corpus = Corpus(root=path, skipped=skipped)
    for p, _, _ in files:
        try:
            doc = load_document(Path(p))
        except (OSError, SearchError) as e:
            corpus.skipped.append((p, str(e)))
            continue
        if doc.text:
            corpus.documents.append(doc)
        else:
            corpus.skipped.append((p, "no text could be extracted"))
    return corpus


def passages(text: str, max_chars: int = 1000) -> list[str]:
    """Split ``text`` into passages of at most ``max_chars``, on paragraph then sentence boundaries."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    for para in paragraphs:
        if len(para) <= max_chars:
            pieces.append(para)
            continue
        sentences = re.split(r"(?<=[.!?。！？])\s+", para)
        for s in sentences:
            while len(s) > max_chars:
                pieces.append(s[:max_chars])
                s = s[max_chars:]
            if s:
                pieces.append(s)
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > max_chars:
            out.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        out.append(current)
    return out
