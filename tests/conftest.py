from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.server import RunningServer, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with the fake hardware type available, noauth, SQLite in tmp_path."""
    with running_server(tmp_path / "data") as s:
        yield s
