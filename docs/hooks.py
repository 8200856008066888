"""MkDocs hooks.

* Docstrings cite references by key (``[sundararajan2017]_``); on the site each key links to its
  entry in the references page, whose rows get matching anchors.
* The methods page is the README's "Methods" section (one source of truth for the method table).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CITATION = re.compile(r"\[([a-z]+\d{4}[a-z]?)\]_")
ROW_KEY = re.compile(r"^\| ([a-z]+\d{4}[a-z]?) \|", flags=re.MULTILINE)
README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    return re.sub(r"\]\((?!https?://)([^)]+)\)", lambda m: f"]({_site_link(m.group(1))})", section)


def _site_link(target: str) -> str:
    # README links point into the repository; on the site the docs pages are siblings
    return target.removeprefix("docs/") if target.startswith("docs/") else f"https://example.invalid/{target}"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri == "methods.md":
        return markdown + "\n" + _readme_section("Methods").split("\n", 1)[1]
    if page.file.src_uri == "references.md":
        return ROW_KEY.sub(lambda m: f'| <span id="{m.group(1)}"></span>{m.group(1)} |', markdown)
    return markdown


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    prefix = "../" * page.url.count("/")
    return CITATION.sub(lambda m: f'<a href="{prefix}references/#{m.group(1)}">[{m.group(1)}]</a>', html)
