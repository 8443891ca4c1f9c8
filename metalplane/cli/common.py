"""What every ``metalplane`` sub-command shares: the API client, option types, parsing."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from metalplane.cli.output import FORMATS, console
from metalplane.client.http import Client

__all__ = ["STATE", "CliError", "Output", "check_format", "client", "delete_each", "kv"]

STATE: dict[str, Any] = {"url": "http://127.0.0.1:6385", "username": None, "password": None}
Output = Annotated[str, typer.Option("-o", "--output", help="table, json or yaml.")]


class CliError(Exception):
    """A usage or input problem, printed as one line."""


def client() -> Client:
    return Client(str(STATE["url"]), STATE["username"], STATE["password"])


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CliError(f"--output must be one of {', '.join(FORMATS)}, not '{fmt}'")
    return fmt


def typed(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(value)
    except ValueError:
        return value


def kv(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``. Raises :class:`CliError`."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} takes KEY=VALUE, not '{item}'")
        out[key] = typed(value)
    return out


def delete_each(path: str, idents: list[str], what: str) -> None:
    """DELETE ``path.format(ident)`` for each ident, saying what went."""
    c = client()
    for ident in idents:
        c.delete(path.format(ident))
        console.print(f"deleted {what} {ident}")
