"""Queries and updates of Neutron's L3 tables: routers, floating IPs, and the network ports
that are their interfaces, gateways and floating addresses.

As :mod:`metalplane.db.network`: a change whose checks must see what it writes (is this
subnet already on the router? does a floating IP use the gateway?) runs as one write
transaction, :func:`l3_change`, whose callable gets an :class:`L3Writes` (the reads and
writes it may make, Core statements on one connection) and never the connection itself.
Lookups of one table by columns outside a change go through
:func:`~metalplane.db.api.rows_where`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from metalplane.common.exceptions import Conflict
from metalplane.db.api import update_many
from metalplane.db.engine import Database
from metalplane.db.models import FloatingIP, IPAllocation, Network, NetworkPort, Router, Subnet
from metalplane.db.network import PortReads

__all__ = ["L3Writes", "l3_change"]

T = TypeVar("T")
_MODELS: dict[str, Any] = {"router": Router, "floatingip": FloatingIP, "port": NetworkPort,
                           "allocation": IPAllocation, "subnet": Subnet, "network": Network}
_TABLES: dict[str, sa.Table] = {kind: model.__table__ for kind, model in _MODELS.items()}


class L3Writes(PortReads):
    """The reads and writes of one L3 change, inside its write transaction. Rows are
    returned with their columns as attributes. ``kind`` is one of ``router``,
    ``floatingip``, ``port``, ``allocation``, ``subnet``, ``network``."""

    def rows(self, kind: str, order_by: tuple[str, ...] = ("id",),
             **equals: Any) -> list[Any]:
        """The rows of ``kind`` whose columns hold ``equals`` (a list or tuple value: any of
        them), ordered by ``order_by``."""
        table = _TABLES[kind]
        q = sa.select(table).order_by(*(table.c[c] for c in order_by))
        for col, value in equals.items():
            q = q.where(table.c[col].in_(list(value)) if isinstance(value, list | tuple)
                        else table.c[col] == value)
        return list(self._conn.execute(q))

    def row(self, kind: str, row_id: Any) -> Any:
        """The row of ``kind`` with id ``row_id``, or None."""
        found = self.rows(kind, id=row_id)
        return found[0] if found else None

    def insert(self, kind: str, values: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Insert one row (or many, all with the same keys) of ``kind``."""
        if values:
            self._conn.execute(sa.insert(_TABLES[kind]), values)

    def update(self, kind: str, row_id: Any, values: dict[str, Any]) -> None:
        """Set ``values`` (column → value) on the row of ``kind`` with id ``row_id``."""
        update_many(self._conn, _MODELS[kind], [{**values, "id": row_id}])

    def delete(self, kind: str, **equals: Any) -> None:
        """Delete the rows of ``kind`` whose columns hold ``equals``."""
        table = _TABLES[kind]
        self._conn.execute(sa.delete(table).where(
            *(table.c[c] == v for c, v in equals.items())))

    def insert_port(self, values: dict[str, Any], allocs: list[dict[str, str]]) -> None:
        """Insert the network port of ``values`` and its ``ip_allocations`` rows."""
        self.insert("port", values)
        self.insert("allocation", allocs)

    def replace_allocations(self, port_id: str, allocs: list[dict[str, str]]) -> None:
        """Drop the addresses of port ``port_id``; insert ``allocs`` instead."""
        self.delete("allocation", port_id=port_id)
        self.insert("allocation", allocs)

    def delete_ports(self, port_ids: Iterable[str]) -> None:
        """Delete network ports and their addresses."""
        for port_id in port_ids:
            self.delete("allocation", port_id=port_id)
            self.delete("port", id=port_id)


def l3_change(db: Database, work: Callable[[L3Writes], T]) -> T:
    """Run ``work`` in one write transaction and return what it returns; it raises to
    refuse (nothing is written then). Raises :class:`Conflict` when a unique key refuses a
    row (an address or a port's fixed IP taken meanwhile)."""
    try:
        with db.transaction() as conn:
            return work(L3Writes(conn))
    except IntegrityError as exc:
        if "floatingip" in str(exc.orig).lower():
            raise Conflict("that fixed IP was just given a floating IP; try again") from None
        raise Conflict("an IP address asked for was just taken; try again") from None
