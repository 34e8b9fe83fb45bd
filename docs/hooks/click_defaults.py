"""MkDocs hook: click 8.3+ reports an option without a default as `Sentinel.UNSET`, which mkdocs-click 0.9
prints verbatim in the reference tables (mkdocs/mkdocs-click#95); show a dash instead."""

from __future__ import annotations

from typing import Any

UNSET = "<code>Sentinel.UNSET</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return html.replace(UNSET, "–")
