"""The checkout's entry points, when the installed package metadata predates them.

metalplane finds hardware types and interfaces through entry points, which Python reads
from the *installed* metadata (``*.dist-info/entry_points.txt``), not from
``pyproject.toml``. An editable install made before an entry point was added does not
list it until ``pip install -e .`` runs again; the tests then could not load the new
interface. :func:`add_missing` writes the entry points ``pyproject.toml`` declares and the
installed metadata lacks into a dist-info directory of their own, put on ``sys.path`` (and
``PYTHONPATH``, for the subprocesses tests start). With up-to-date metadata it does
nothing.
"""

from __future__ import annotations

import os
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["add_missing"]

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def add_missing(where: Path) -> dict[str, list[str]]:
    """Make the entry points of ``pyproject.toml`` missing from the installed metadata
    visible, from a dist-info directory under ``where``. Returns the names added per
    group (empty: none was missing)."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"].get("entry-points", {})
    missing: dict[str, dict[str, str]] = {}
    for group, eps in declared.items():
        have = {ep.name for ep in entry_points(group=group)}
        lacking = {name: value for name, value in eps.items() if name not in have}
        if lacking:
            missing[group] = lacking
    if not missing:
        return {}
    info = where / "metalplane_checkout_entry_points-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\n"
                                   "Name: metalplane-checkout-entry-points\nVersion: 0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items()) + "\n"
        for group, eps in missing.items()))
    sys.path.append(str(where))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH", ""), str(where)) if p)
    return {group: sorted(eps) for group, eps in missing.items()}
