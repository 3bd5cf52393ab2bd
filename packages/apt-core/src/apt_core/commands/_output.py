"""Shared output helpers for the core commands: key/value tables and JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import click

__all__ = ["print_table", "print_json", "human_bytes", "fmt_number"]


def fmt_number(value: Any) -> str:
    """Compact human formatting for table cells."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def print_table(rows: list[tuple[str, Any]], title: str | None = None) -> None:
    """Two-column table: names left, values right-aligned to a common width."""
    if title:
        click.echo(title)
    cells = [(str(k), fmt_number(v)) for k, v in rows]
    left = max((len(k) for k, _ in cells), default=0)
    right = max((len(v) for _, v in cells), default=0)
    rule = "-" * (left + right + 3)
    click.echo(rule)
    for k, v in cells:
        click.echo(f"{k.ljust(left)}   {v.rjust(right)}" if len(v) <= 40 else f"{k.ljust(left)}   {v}")
    click.echo(rule)


def print_json(data: Any) -> None:
    """Pretty JSON on stdout (non-finite floats become null so the output stays valid JSON)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    click.echo(json.dumps(clean(data), indent=2, sort_keys=False))


def human_bytes(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
