"""What a ``xcorr demo`` section returns (`DemoSection`) and the helpers sections share: the demo's
pipeline spec, an HTML table and the pick of decisions to draw. Depends on pydantic and the standard library only.
"""
from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["DemoSection", "demo_spec_path", "html_table", "right_and_wrong"]


class DemoSection(BaseModel):
    """One section of the demo report."""

    title: str
    report: dict[str, Any] = Field(default_factory=dict)
    figures: list[str] = Field(default_factory=list)  # paths relative to the output folder
    html: str = ""
    error: str | None = None
    seconds: float | None = None  # set by the demo: the section's wall time


def demo_spec_path() -> Path:
    return Path(str(resources.files("xcorr_core") / "specs" / "demo.yaml"))


def html_table(rows: list[list[Any]], header: list[str]) -> str:
    """An HTML table (cells escaped) for a section's body."""
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def right_and_wrong(predictions: Any, targets: Any, n: int = 1) -> list[tuple[str, list[int]]]:
    """The first ``n`` right and the first ``n`` wrong decisions, as ``[("correct", [i, ...]),
    ("wrong", [j, ...])]`` (what a section draws explanations of); ``predictions`` / ``targets``
    long `[N]`."""
    ok = predictions == targets
    return [("correct", ok.nonzero().flatten()[:n].tolist()), ("wrong", (~ok).nonzero().flatten()[:n].tolist())]

