"""Render the provision state machine as a Mermaid diagram in Markdown.

``python -m metalplane.lifecycle.diagram docs/states.md`` writes it; ``--check`` exits 1
when the file differs from the table (CI runs this so the doc cannot drift).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metalplane.lifecycle import states

__all__ = ["render"]


def _id(state: str) -> str:
    return state.replace(" ", "_").replace("-", "_")


def render() -> str:
    """The Markdown text: a Mermaid state diagram plus the table it came from."""
    lines = [
        "# Provision states",
        "",
        "Generated from `metalplane/lifecycle/states.py` by "
        "`python -m metalplane.lifecycle.diagram docs/states.md`; do not edit by hand.",
        "",
        "Verbs (what a user sends to `PUT /v1/nodes/{node}/states/provision`) are in bold;",
        "`done`, `wait`, `resume` and `fail` are fired by the conductor as work progresses.",
        "A wait state that outlives its timeout fires `fail` with a `last_error`.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {_id(states.ENROLL)}",
    ]
    for s in sorted(states.ALL_STATES):
        lines.append(f'    state "{s}" as {_id(s)}')
    for t in states.TRANSITIONS:
        lines.append(f"    {_id(t.source)} --> {_id(t.dest)}: {t.event}")
    lines += ["```", "", "| from | event | to | target_provision_state |", "|---|---|---|---|"]
    for t in states.TRANSITIONS:
        ev = f"**{t.event}**" if t.event in states.VERBS else t.event
        lines.append(f"| {t.source} | {ev} | {t.dest} | {t.target or ''} |")
    lines += ["", "Wait-state timeouts (seconds, settings):", ""]
    for s in sorted(states.WAIT_STATES):
        lines.append(f"- `{s}`: `{states.timeout_setting(s)}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 if stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.exists() or args.path.read_text() != text:
            print(f"{args.path} is stale: run python -m metalplane.lifecycle.diagram {args.path}",
                  file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
