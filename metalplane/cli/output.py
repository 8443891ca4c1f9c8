"""Printing for the CLI: rich tables for people, JSON or YAML for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

__all__ = ["FORMATS", "console", "emit", "err_console"]

FORMATS = ("table", "json", "yaml")
# Piped output is not cut to 80 columns: a UUID split over lines helps no script or reader.
console = Console(width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def emit(data: Any, fmt: str, columns: Sequence[str] | None = None) -> None:
    """Print ``data`` (a dict, or a list of dicts shown with ``columns``) as ``fmt``."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=True, default_flow_style=False))
        return
    if isinstance(data, list):
        table = Table(show_header=True, header_style="bold")
        cols = list(columns or (data[0].keys() if data else []))
        for c in cols:
            table.add_column(c.replace("_", " ").title())
        for row in data:
            table.add_row(*(_cell(row.get(c)) for c in cols))
        console.print(table)
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    for k in sorted(data):
        if k == "links":
            continue
        table.add_row(k, _cell(data[k]))
    console.print(table)
