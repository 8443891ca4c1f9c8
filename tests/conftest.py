from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import entry_points
from tests.helpers.server import RunningServer, running_server


@pytest.fixture(scope="session", autouse=True)
def checkout_entry_points(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Interfaces pyproject.toml declares but a stale editable install does not list yet
    (:mod:`tests.helpers.entry_points`)."""
    if entry_points.add_missing(tmp_path_factory.mktemp("entry-points")):
        from metalplane.drivers import registry

        registry.hardware_types.cache_clear()
        registry._implementations.cache_clear()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with the fake hardware type available, noauth, SQLite in tmp_path."""
    with running_server(tmp_path / "data") as s:
        yield s
