"""``metalplane inspection rule``: the inspection rules of Ironic's built-in inspection
(``/v1/inspection_rules``, API 1.96), and the import of a rules file.

``import`` takes a JSON or YAML file holding one rule or a list of them, in Ironic's shape
(``op`` and ``args``) or in ironic-inspector's (``field`` with ``data://`` / ``node://``
paths, actions named by ``action``), which it converts
(:func:`metalplane.common.inspection_rules.from_inspector`) and sends unchanged otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from metalplane.cli.common import CliError, Output, check_format, client, delete_each
from metalplane.cli.output import emit
from metalplane.client.http import ApiError
from metalplane.common.inspection_rules import RuleError, from_inspector, is_inspector_format

__all__ = ["inspection_app", "load_rules"]

inspection_app = typer.Typer(help="Inspection: the rules applied to inspection data.",
                             no_args_is_help=True)
rule_app = typer.Typer(help="Inspection rules (conditions on the inventory, actions on the "
                            "node).", no_args_is_help=True)
inspection_app.add_typer(rule_app, name="rule")

RULE_COLUMNS = ("uuid", "priority", "phase", "description")


def load_rules(path: Path) -> list[dict[str, Any]]:
    """The rules in ``path`` (JSON or YAML: one rule or a list), in Ironic's shape.
    Raises :class:`CliError` naming the rule and field that cannot be read."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CliError(f"{path} is neither JSON nor YAML: {exc}") from None
    rules = data if isinstance(data, list) else [data]
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise CliError(f"{path}: rule {i} is not an object")
        try:
            out.append(from_inspector(rule) if is_inspector_format(rule) else rule)
        except RuleError as exc:
            raise CliError(f"{path}: rule {i}: {exc}") from None
    return out


@rule_app.command("import")
def rule_import(
    file: Annotated[Path, typer.Argument(help="JSON or YAML: a rule or a list of rules.")],
    output: Output = "table",
) -> None:
    """Create the rules of FILE (Ironic's or ironic-inspector's format)."""
    check_format(output)
    c = client()
    created = []
    for i, rule in enumerate(load_rules(file)):
        try:
            created.append(c.post("/v1/inspection_rules", rule))
        except ApiError as exc:
            raise CliError(f"{file}: rule {i} refused: {exc.message}"
                           + (f" ({len(created)} created before it)" if created else "")
                           ) from None
    emit(created, output, RULE_COLUMNS)


@rule_app.command("list")
def rule_list(output: Output = "table") -> None:
    """List the rules, highest priority first."""
    check_format(output)
    rules = client().get("/v1/inspection_rules", detail=True)["inspection_rules"]
    emit(sorted(rules, key=lambda r: -int(r.get("priority") or 0)), output, RULE_COLUMNS)


@rule_app.command("show")
def rule_show(uuid: str, output: Output = "table") -> None:
    """Show a rule (a sensitive one's conditions and actions are hidden)."""
    check_format(output)
    emit(client().get(f"/v1/inspection_rules/{uuid}"), output)


@rule_app.command("delete")
def rule_delete(uuids: list[str]) -> None:
    """Delete rules."""
    delete_each("/v1/inspection_rules/{}", uuids, "inspection rule")
