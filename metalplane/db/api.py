"""Queries and updates on the store: nodes, ports, portgroups, allocations, conductors.

SQL is written in ``metalplane/db`` only: here, and in :mod:`metalplane.db.network` for
the network service's tables, which reuses this module's helpers (:func:`rows_where`,
:func:`update_row`, :func:`update_many`). Nothing above ``db`` imports SQLAlchemy.

Functions take a :class:`~metalplane.db.engine.Database` or a session and return model
objects detached from their session. Node locks are *reservations*: a conditional
``UPDATE nodes SET reservation=… WHERE reservation IS NULL``, which is atomic on SQLite
and PostgreSQL alike, so several conductors can share one database.

A change of a node's fields (:func:`update_node`, :func:`release_node` with values,
:func:`destroy_node`) is announced to the ``"nodes"`` listeners
(:mod:`metalplane.db.listeners`, with the node's ``id`` and the values written, None
for a deletion), so a view kept from nodes (the BareMetalHosts' status) follows at once,
every provision state included, without the conductor knowing of it.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from metalplane.common.exceptions import Conflict, Invalid, NodeLocked, NotFound
from metalplane.db.engine import Database
from metalplane.db.listeners import notify
from metalplane.db.models import Allocation, Conductor, Node, Port, Portgroup, utcnow

__all__ = [
    "NODES_TOPIC",
    "allocate_node",
    "allocation_candidates",
    "create_allocation",
    "create_node",
    "create_port",
    "create_portgroup",
    "delete_allocation_of_node",
    "destroy_allocation",
    "destroy_node",
    "get_allocation",
    "get_conductor",
    "get_node",
    "get_port",
    "get_portgroup",
    "list_allocations",
    "list_conductors",
    "list_nodes",
    "list_portgroups",
    "list_ports",
    "release_node",
    "reserve_node",
    "rows_where",
    "update_allocation",
    "update_many",
    "update_node",
    "update_row",
]

NODES_TOPIC = "nodes"  # listeners told of a node's change (metalplane.db.listeners)

NODE_SORT_KEYS = ("id", "uuid", "name", "created_at", "updated_at", "provision_state",
                  "power_state", "driver", "conductor_group", "owner", "resource_class")


def is_uuid_like(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


_NODES: sa.Table = Node.__table__  # type: ignore[assignment]


def _detached(model: Any, row: sa.Row[Any]) -> Any:
    """Seam on SQLAlchemy's ORM: an object of ``model`` (an ORM class) holding ``row`` (all
    its table's columns, from a Core statement), detached, as the session-based functions
    return theirs, built without a session or the instrumented constructor.

    Relies on SQLAlchemy (checked by tests/unit/test_library_seams.py): the mapper's
    ``class_manager.new_instance()`` makes an instance with its state and no attributes;
    an instance's loaded attributes are its ``__dict__`` (so writing the columns there
    loads them, with no history); ``make_transient_to_detached`` then gives it its
    identity key, as a detached object loaded from the database.
    Measured: a node by id in 70 µs, against 174 (``Session.get``) and 103 (the public
    constructor); a session reads a thousand rows faster (docs/benchmarks.md, "Library
    seams")."""
    mapper = model.__mapper__
    if not mapper.configured:
        sa.orm.configure_mappers()
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(row._mapping)
    make_transient_to_detached(obj)
    return obj


@functools.lru_cache(maxsize=256)
def _select_where(table: sa.Table, keys: tuple[tuple[str, bool], ...],
                  order: tuple[str, ...]) -> sa.Select[Any]:
    """``SELECT * FROM <table> WHERE <key> = :_w_<key> [AND <key> IN (...)] ... ORDER BY
    <order>``, built once per shape (``(column, is_list)`` pairs)."""
    q = sa.select(table)
    for key, many in keys:
        bind: sa.BindParameter[Any] = sa.bindparam(f"_w_{key}", expanding=many)
        q = q.where(table.c[key].in_(bind) if many else table.c[key] == bind)
    return q.order_by(*(table.c[o] for o in order))


def rows_where(db: Database, model: Any, order_by: tuple[str, ...] = (),
               **equals: Any) -> list[Any]:
    """The rows of ``model`` (an ORM class) whose columns hold ``equals`` (a list or
    tuple value: any of them), ordered by ``order_by``, as detached objects. One cached
    Core statement run alone: the lookups a network change makes a dozen times (a network
    by ID, its segment, a port, a switch) cost no session each."""
    table: sa.Table = model.__table__
    keys = tuple((k, isinstance(v, list | tuple)) for k, v in sorted(equals.items()))
    rows = db.execute(_select_where(table, keys, order_by),
                      {f"_w_{k}": list(equals[k]) if many else equals[k] for k, many in keys})
    return [_detached(model, r) for r in rows]


def _ident_column(ident: str) -> dict[str, Any]:
    """``{column: value}`` of the node whose UUID or name is ``ident``."""
    if is_uuid_like(ident):
        return {"uuid": str(uuidlib.UUID(ident))}
    return {"name": ident}


def get_node(db: Database, ident: str) -> Node:
    """The node whose UUID or name is ``ident``. Raises :class:`NotFound`."""
    rows = rows_where(db, Node, **_ident_column(ident))
    if not rows:
        raise NotFound(f"Node {ident} could not be found.")
    node: Node = rows[0]
    return node


def _unique_violation(exc: IntegrityError, what: str, values: dict[str, Any]) -> Conflict:
    text = str(exc.orig).lower()
    for field in ("address", "name", "uuid"):
        if field in text and values.get(field) is not None:
            if field == "address":
                return Conflict(f"A {what} with MAC address {values['address']} already exists.")
            return Conflict(f"A {what} with {field} {values[field]!r} already exists.")
    return Conflict(f"{what} conflicts with an existing one: {exc.orig}")


def create_node(db: Database, values: dict[str, Any]) -> Node:
    """Insert a node. Raises :class:`Conflict` for a duplicate uuid or name."""
    values = dict(values)
    values.setdefault("uuid", str(uuidlib.uuid4()))
    try:
        rows = db.execute(sa.insert(_NODES).values(**values).returning(_NODES), write=True)
    except IntegrityError as exc:
        raise _unique_violation(exc, "node", values) from None
    node: Node = _detached(Node, rows[0])
    return node


def _paged(q: Any, model: Any, marker_row: Any, sort_key: str, sort_dir: str,
           limit: int | None) -> Any:
    """``q`` ordered by ``sort_key`` (ties by id, so paging never skips or repeats), after
    ``marker_row`` if given, at most ``limit`` rows. ``sort_dir`` is ``asc`` or ``desc``
    (checked by :func:`_check_sort`)."""
    col, ident = getattr(model, sort_key), model.id
    asc = sort_dir == "asc"
    if marker_row is not None:
        mval, mid = getattr(marker_row, sort_key), marker_row.id
        if sort_key == "id":
            q = q.where(ident > mid if asc else ident < mid)
        else:
            after = (col > mval) | ((col == mval) & (ident > mid))
            before = (col < mval) | ((col == mval) & (ident < mid))
            q = q.where(after if asc else before)
    q = q.order_by(col.asc() if asc else col.desc(), ident.asc() if asc else ident.desc())
    return q.limit(limit) if limit else q


def _check_sort(sort_key: str, sort_dir: str, keys: Sequence[str]) -> None:
    """Raises :class:`Invalid` (Ironic's messages) for a key not in ``keys`` or a bad
    direction."""
    if sort_key not in keys:
        raise Invalid(f"The sort_key value {sort_key} is an invalid field for sorting; "
                      f"one of {', '.join(keys)}")
    if sort_dir not in ("asc", "desc"):
        raise Invalid(f"Invalid sort direction: {sort_dir}. Acceptable values are "
                      "'asc' or 'desc'")


def list_nodes(
    db: Database,
    filters: dict[str, Any] | None = None,
    limit: int | None = None,
    marker: str | None = None,
    sort_key: str = "id",
    sort_dir: str = "asc",
    columns: Sequence[str] | None = None,
    project: str | None = None,
) -> list[Any]:
    """Nodes matching ``filters`` (column → value; None matches NULL), ordered by
    ``sort_key``, after ``marker`` (a node UUID) and at most ``limit`` of them: ``Node``
    objects, or with ``columns`` rows of just those columns (attribute access as on a
    node; what ``?fields=`` asks for, without building whole nodes). With ``project``,
    only nodes it owns or leases.
    Raises :class:`Invalid` for a bad sort key or marker."""
    _check_sort(sort_key, sort_dir, NODE_SORT_KEYS)
    with db.read() as s:
        q: Any = sa.select(*(_NODES.c[c] for c in columns)) if columns else sa.select(Node)
        for key, value in (filters or {}).items():
            c = getattr(Node, key)
            q = q.where(c.is_(None) if value is None else c == value)
        if project is not None:
            q = q.where(_of_project(project))
        m = None
        if marker:
            m = s.scalars(sa.select(Node).where(Node.uuid == marker)).first()
            if m is None:
                raise Invalid(f"marker {marker} is not a node UUID")
        q = _paged(q, Node, m, sort_key, sort_dir, limit)
        return list(s.execute(q)) if columns else list(s.scalars(q))


def _set_binds(keys: tuple[str, ...], table: sa.Table = _NODES) -> dict[str, Any]:
    """``SET`` values of a cached statement: a bind parameter ``_v_<key>`` per column
    (:func:`_set_params` fills them), typed as the column is."""
    return {k: sa.bindparam(f"_v_{k}", type_=table.c[k].type) for k in keys}


def _set_params(values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`_set_binds`'s bind parameters for ``values``."""
    return {f"_v_{k}": v for k, v in values.items()}


@functools.lru_cache(maxsize=512)
def _node_update(keys: tuple[str, ...]) -> Any:
    """``UPDATE nodes SET <keys> WHERE id = :_id RETURNING *``, built once per key set: a
    conductor sets the same few fields over and over, and building the statement costs
    more CPU than running it on SQLite."""
    return (sa.update(_NODES).where(_NODES.c.id == sa.bindparam("_id"))
            .values(_set_binds(keys))
            .returning(_NODES))


def update_node(db: Database, node_id: int, values: dict[str, Any],
                expect: dict[str, Any] | None = None) -> Node:
    """Set ``values`` on node ``node_id`` and return it; with ``expect``, only if those
    columns still hold those values (else :class:`Conflict`). One ``UPDATE .. RETURNING``."""
    values = {**values, "updated_at": utcnow()}
    if expect:
        q = sa.update(_NODES).where(_NODES.c.id == node_id)
        for k, v in expect.items():
            c = _NODES.c[k]
            q = q.where(c.is_(None) if v is None else c == v)
        stmt: Any = q.values(**values).returning(_NODES)
        params: dict[str, Any] | None = None
    else:
        stmt = _node_update(tuple(sorted(values)))
        params = {**_set_params(values), "_id": node_id}
    try:
        rows = db.execute(stmt, params, write=True)
    except IntegrityError as exc:
        raise _unique_violation(exc, "node", values) from None
    if not rows:
        raise Conflict(f"node {node_id} changed under this update; try again")
    node: Node = _detached(Node, rows[0])
    notify(db, NODES_TOPIC, node_id, values)
    return node


def destroy_node(db: Database, node_id: int) -> None:
    """Delete a node, its ports and portgroups, and its allocation (as Ironic does)."""
    with db.write() as s:
        s.execute(sa.delete(Allocation).where(Allocation.node_id == node_id))
        s.execute(sa.delete(Port).where(Port.node_id == node_id))
        s.execute(sa.delete(Portgroup).where(Portgroup.node_id == node_id))
        s.execute(sa.delete(Node).where(Node.id == node_id))
    notify(db, NODES_TOPIC, node_id, None)


# ---- locks ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _node_reserve(by: str) -> Any:
    """``UPDATE nodes SET reservation=…, reservation_purpose=… WHERE <by> = :ident AND
    reservation IS NULL RETURNING *``, built once."""
    return (sa.update(_NODES)
            .where(_NODES.c[by] == sa.bindparam("ident"), _NODES.c.reservation.is_(None))
            .values(reservation=sa.bindparam("host"), reservation_purpose=sa.bindparam("purpose"))
            .returning(_NODES))


def reserve_node(db: Database, ident: str, host: str, purpose: str) -> Node:
    """Take node ``ident``'s lock for ``host`` doing ``purpose`` (one ``UPDATE .. RETURNING``
    when the node is free).

    Raises :class:`NotFound`, or :class:`NodeLocked` naming the holder and its purpose.
    """
    [(by, value)] = _ident_column(ident).items()
    rows = db.execute(_node_reserve(by), {"ident": value, "host": host, "purpose": purpose},
                      write=True)
    if rows:
        reserved: Node = _detached(Node, rows[0])
        return reserved
    node = get_node(db, ident)
    raise NodeLocked(
        f"Node {node.uuid} is locked by host {node.reservation} for "
        f"{node.reservation_purpose or 'an operation'}; please retry after it finishes."
    )


@functools.lru_cache(maxsize=256)
def _node_release(keys: tuple[str, ...]) -> Any:
    """``UPDATE nodes SET reservation=NULL, … <keys> WHERE id = :_id AND reservation =
    :_host``, built once per key set."""
    return (sa.update(_NODES)
            .where(_NODES.c.id == sa.bindparam("_id"),
                   _NODES.c.reservation == sa.bindparam("_host"))
            .values(reservation=None, reservation_purpose=None, **_set_binds(keys)))


def release_node(db: Database, node_id: int, host: str,
                 values: dict[str, Any] | None = None) -> None:
    """Release the lock ``host`` holds on the node (no-op if it holds none), setting
    ``values`` in the same statement (a task's last change and its release are one write)."""
    extra = {**values, "updated_at": utcnow()} if values else {}
    db.execute(_node_release(tuple(sorted(extra))),
               {**_set_params(extra), "_id": node_id, "_host": host}, write=True)
    if extra:
        notify(db, NODES_TOPIC, node_id, extra)


# ---- conductors ----------------------------------------------------------------------

def register_conductor(db: Database, hostname: str, group: str, drivers: list[str]) -> None:
    """Insert or revive the conductor row of ``hostname`` with a fresh heartbeat."""
    with db.write() as s:
        row = s.scalars(sa.select(Conductor).where(Conductor.hostname == hostname)).first()
        if row is None:
            s.add(Conductor(hostname=hostname, conductor_group=group, drivers=drivers,
                            online=True, updated_at=utcnow()))
        else:
            row.online, row.drivers, row.conductor_group = True, drivers, group
            row.updated_at = utcnow()


def touch_conductor(db: Database, hostname: str) -> None:
    with db.write() as s:
        s.execute(sa.update(Conductor).where(Conductor.hostname == hostname)
                  .values(updated_at=utcnow(), online=True))


def unregister_conductor(db: Database, hostname: str) -> None:
    with db.write() as s:
        s.execute(sa.update(Conductor).where(Conductor.hostname == hostname)
                  .values(online=False))


def dead_conductors(db: Database, older_than: float) -> list[str]:
    """Hostnames whose heartbeat is older than ``older_than`` seconds or that went offline."""
    limit = utcnow() - dt.timedelta(seconds=older_than)
    with db.read() as s:
        rows = s.scalars(sa.select(Conductor.hostname).where(
            (Conductor.updated_at < limit) | (Conductor.online.is_(False))))
        return list(rows)


def live_conductors(db: Database, within: float) -> list[str]:
    """Hostnames of online conductors that heartbeat within the last ``within`` seconds."""
    limit = utcnow() - dt.timedelta(seconds=within)
    with db.read() as s:
        return list(s.scalars(sa.select(Conductor.hostname).where(
            (Conductor.updated_at >= limit) & (Conductor.online.is_(True)))))


def rewrite_driver_infos(db: Database,
                         fn: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Replace every node's ``driver_info`` with ``fn(driver_info)``, all in one
    transaction (all or none); return how many nodes changed. ``fn``'s exceptions roll
    everything back."""
    with db.transaction() as conn:
        rows = conn.execute(sa.select(_NODES.c.id, _NODES.c.driver_info)).all()
        changed = [{"id": r.id, "driver_info": new} for r in rows
                   if (new := fn(dict(r.driver_info or {}))) != (r.driver_info or {})]
        update_many(conn, Node, changed)
    return len(changed)


def nodes_reserved_by(db: Database, hosts: Sequence[str]) -> list[Node]:
    if not hosts:
        return []
    with db.read() as s:
        return list(s.scalars(sa.select(Node).where(Node.reservation.in_(list(hosts)))))


def nodes_in_states(db: Database, states: Sequence[str], unlocked_only: bool = True,
                    maintenance: bool | None = None) -> list[Node]:
    with db.read() as s:
        q = sa.select(Node).where(Node.provision_state.in_(list(states)))
        if unlocked_only:
            q = q.where(Node.reservation.is_(None))
        if maintenance is not None:
            q = q.where(Node.maintenance.is_(maintenance))
        return list(s.scalars(q.order_by(Node.id)))


def nodes_for_power_sync(db: Database, excluded_states: Sequence[str]) -> list[Node]:
    with db.read() as s:
        return list(s.scalars(
            sa.select(Node).where(
                Node.reservation.is_(None),
                Node.maintenance.is_(False),
                Node.provision_state.not_in(list(excluded_states)),
            ).order_by(Node.id)))


# ---- ports and portgroups ------------------------------------------------------------

def _get_by(s: Session, model: Any, ident: str, what: str) -> Any:
    if is_uuid_like(ident):
        obj = s.scalars(sa.select(model).where(model.uuid == str(uuidlib.UUID(ident)))).first()
    elif model is Port and ":" in ident:
        obj = s.scalars(sa.select(model).where(model.address == ident.lower())).first()
    else:
        obj = s.scalars(sa.select(model).where(model.name == ident)).first()
    if obj is None:
        raise NotFound(f"{what.capitalize()} {ident} could not be found.")
    return obj


def get_port(db: Database, ident: str) -> Port:
    with db.read() as s:
        port: Port = _get_by(s, Port, ident, "port")
        return port


def get_portgroup(db: Database, ident: str) -> Portgroup:
    with db.read() as s:
        pg: Portgroup = _get_by(s, Portgroup, ident, "portgroup")
        return pg


def _create(db: Database, obj: Any, what: str, values: dict[str, Any]) -> Any:
    try:
        with db.write() as s:
            s.add(obj)
    except IntegrityError as exc:
        raise _unique_violation(exc, what, values) from None
    return obj


def create_port(db: Database, values: dict[str, Any]) -> Port:
    """Insert a port. Raises :class:`Conflict` for a MAC address already in use."""
    values = {"uuid": str(uuidlib.uuid4()), **values}
    port: Port = _create(db, Port(**values), "port", values)
    return port


def create_portgroup(db: Database, values: dict[str, Any]) -> Portgroup:
    values = {"uuid": str(uuidlib.uuid4()), **values}
    pg: Portgroup = _create(db, Portgroup(**values), "portgroup", values)
    return pg


def _page(s: Session, q: Any, model: Any, marker: str | None, limit: int | None,
          what: str) -> list[Any]:
    """Rows of ``q`` after the row whose UUID is ``marker``, in id order, at most ``limit``."""
    if marker:
        m = s.scalars(sa.select(model).where(model.uuid == marker)).first()
        if m is None:
            raise Invalid(f"marker {marker} is not a {what} UUID")
        q = q.where(model.id > m.id)
    q = q.order_by(model.id)
    if limit:
        q = q.limit(limit)
    return list(s.scalars(q))


def _of_project(project: str) -> Any:
    """Nodes owned or leased by ``project`` (what its users see, Ironic's default policy)."""
    return (Node.owner == project) | (Node.lessee == project)


def _on_project_nodes(model: Any, project: str | None) -> Any:
    """Ports or portgroups, those of the nodes ``project`` owns or leases if given."""
    q = sa.select(model)
    if project is not None:
        q = q.where(model.node_id.in_(sa.select(Node.id).where(_of_project(project))))
    return q


def list_ports(db: Database, node_id: int | None = None, address: str | None = None,
               portgroup_id: int | None = None, limit: int | None = None,
               marker: str | None = None, project: str | None = None) -> list[Port]:
    """Ports (of ``node_id``, ``portgroup_id``, with MAC ``address``; of the nodes
    ``project`` owns or leases), in id order after ``marker``, at most ``limit``."""
    with db.read() as s:
        q = _on_project_nodes(Port, project)
        if node_id is not None:
            q = q.where(Port.node_id == node_id)
        if portgroup_id is not None:
            q = q.where(Port.portgroup_id == portgroup_id)
        if address is not None:
            q = q.where(Port.address == address.lower())
        return _page(s, q, Port, marker, limit, "port")


def list_portgroups(db: Database, node_id: int | None = None, limit: int | None = None,
                    marker: str | None = None, address: str | None = None,
                    project: str | None = None) -> list[Portgroup]:
    """Portgroups (of ``node_id``, with MAC ``address``; of the nodes ``project`` owns or
    leases), in id order after ``marker``, at most ``limit``. Raises :class:`Invalid` for
    an unknown marker."""
    with db.read() as s:
        q = _on_project_nodes(Portgroup, project)
        if node_id is not None:
            q = q.where(Portgroup.node_id == node_id)
        if address is not None:
            q = q.where(Portgroup.address == address)
        return _page(s, q, Portgroup, marker, limit, "portgroup")


def node_wiring(db: Database, node_id: int) -> tuple[list[Port], list[Portgroup]]:
    """A node's ports and portgroups (by id). Each task step that touches networks reads
    them, for nodes without any too, so this is two Core statements, not a session."""
    ports = rows_where(db, Port, order_by=("id",), node_id=node_id)
    groups = rows_where(db, Portgroup, order_by=("id",), node_id=node_id)
    return ports, groups


@functools.lru_cache(maxsize=256)
def _update_by_id(table: sa.Table, keys: tuple[str, ...], returning: bool = True) -> Any:
    """``UPDATE <table> SET <keys> WHERE id = :_id [RETURNING *]``, built once per shape."""
    q = sa.update(table).where(table.c.id == sa.bindparam("_id")).values(
        _set_binds(keys, table))
    return q.returning(table) if returning else q


def update_many(conn: sa.Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    """In ``conn``'s transaction, set the columns of each of ``rows`` (dicts with the row's
    ``id`` and the same other columns) on the ``model`` row with that id: one executemany
    ``UPDATE``. Ids that are gone are skipped."""
    if not rows:
        return
    keys = tuple(sorted(k for k in rows[0] if k != "id"))
    conn.execute(_update_by_id(model.__table__, keys, False),
                 [{**_set_params({k: r[k] for k in keys}), "_id": r["id"]} for r in rows])


def update_row(db: Database, model: Any, row_id: int | str, values: dict[str, Any],
               what: str) -> Any:
    """Set ``values`` on the ``model`` row with id ``row_id`` and return it (detached).
    Raises :class:`NotFound`, or :class:`Conflict` on a duplicate."""
    stmt = _update_by_id(model.__table__, tuple(sorted(values)))
    try:
        rows = db.execute(stmt, {**_set_params(values), "_id": row_id}, write=True)
    except IntegrityError as exc:
        raise _unique_violation(exc, what, values) from None
    if not rows:
        raise NotFound(f"{what} {row_id} could not be found.")
    return _detached(model, rows[0])


def delete_row(db: Database, model: Any, row_id: int) -> None:
    with db.write() as s:
        if model is Portgroup:
            s.execute(sa.update(Port).where(Port.portgroup_id == row_id)
                      .values(portgroup_id=None))
        s.execute(sa.delete(model).where(model.id == row_id))


def node_by_id(db: Database, node_id: int) -> Node:
    """The node with database id ``node_id``. Raises :class:`NotFound`."""
    rows = rows_where(db, Node, id=node_id)
    if not rows:
        raise NotFound(f"Node {node_id} could not be found.")
    node: Node = rows[0]
    return node


def portgroup_by_id(db: Database, pg_id: int) -> Portgroup | None:
    with db.read() as s:
        return s.get(Portgroup, pg_id)


# ---- allocations ---------------------------------------------------------------------

ALLOCATION_SORT_KEYS = ("id", "uuid", "name", "created_at", "updated_at", "state", "owner",
                        "resource_class", "node_id")
_ALLOCATIONS: sa.Table = Allocation.__table__  # type: ignore[assignment]


def _allocation_conflict(exc: IntegrityError, values: dict[str, Any]) -> Conflict:
    text = str(exc.orig).lower()
    if "name" in text and values.get("name") is not None:
        return Conflict(f"An allocation with name {values['name']} already exists.")
    if "uuid" in text and values.get("uuid") is not None:
        return Conflict(f"An allocation with UUID {values['uuid']} already exists.")
    return Conflict(f"allocation conflicts with an existing one: {exc.orig}")


def create_allocation(db: Database, values: dict[str, Any]) -> Allocation:
    """Insert an allocation. Raises :class:`Conflict` for a duplicate uuid or name."""
    values = {"uuid": str(uuidlib.uuid4()), **values}
    try:
        rows = db.execute(sa.insert(_ALLOCATIONS).values(**values).returning(_ALLOCATIONS),
                          write=True)
    except IntegrityError as exc:
        raise _allocation_conflict(exc, values) from None
    alloc: Allocation = _detached(Allocation, rows[0])
    return alloc


def get_allocation(db: Database, ident: str) -> Allocation:
    """The allocation whose UUID or name is ``ident``. Raises :class:`NotFound`
    ("Allocation X could not be found.")."""
    rows = rows_where(db, Allocation, **_ident_column(ident))
    if not rows:
        raise NotFound(f"Allocation {ident} could not be found.")
    alloc: Allocation = rows[0]
    return alloc


def allocation_of_node(db: Database, node_id: int) -> Allocation | None:
    """The allocation holding node ``node_id``, if any."""
    rows = rows_where(db, Allocation, node_id=node_id)
    return rows[0] if rows else None


def list_allocations(db: Database, filters: dict[str, Any] | None = None,
                     limit: int | None = None, marker: str | None = None,
                     sort_key: str = "id", sort_dir: str = "asc") -> list[Allocation]:
    """Allocations whose columns hold ``filters``, ordered by ``sort_key`` (ties by id),
    after the allocation whose UUID is ``marker``, at most ``limit``.
    Raises :class:`Invalid` for a bad sort key, direction or marker."""
    _check_sort(sort_key, sort_dir, ALLOCATION_SORT_KEYS)
    with db.read() as s:
        q = sa.select(Allocation)
        for key, value in (filters or {}).items():
            q = q.where(getattr(Allocation, key) == value)
        m = None
        if marker:
            m = s.scalars(sa.select(Allocation).where(Allocation.uuid == marker)).first()
            if m is None:
                raise Invalid(f"marker {marker} is not an allocation UUID")
        return list(s.scalars(_paged(q, Allocation, m, sort_key, sort_dir, limit)))


def update_allocation(db: Database, alloc_id: int, values: dict[str, Any]) -> Allocation:
    """Set ``values`` on allocation ``alloc_id`` and return it.
    Raises :class:`NotFound`, or :class:`Conflict` for a duplicate name."""
    values = {**values, "updated_at": utcnow()}
    try:
        alloc: Allocation = update_row(db, Allocation, alloc_id, values, "Allocation")
    except Conflict as exc:
        if "name" in exc.message and values.get("name") is not None:
            raise Conflict(f"An allocation with name {values['name']} already exists.") \
                from None
        raise
    return alloc


def allocation_candidates(db: Database, resource_class: str | None, owner: str | None,
                          uuids: Sequence[str] | None) -> list[Node]:
    """Nodes an allocation may take: ``available``, not in maintenance, with no
    instance_uuid and no allocation, of ``resource_class``; with ``owner``, owned or leased
    by it; with ``uuids``, among them. Traits are the caller's to check (a JSON column)."""
    with db.read() as s:
        q = sa.select(Node).where(
            Node.provision_state == "available", Node.maintenance.is_(False),
            Node.instance_uuid.is_(None), Node.allocation_id.is_(None),
            Node.resource_class == resource_class)
        if owner:
            q = q.where((Node.owner == owner) | (Node.lessee == owner))
        if uuids:
            q = q.where(Node.uuid.in_(list(uuids)))
        return list(s.scalars(q.order_by(Node.id)))


def allocate_node(db: Database, alloc_id: int, node_id: int, node_values: dict[str, Any],
                  instance_uuid: str | None = None) -> Allocation:
    """In one transaction: give node ``node_id`` to allocation ``alloc_id`` (its node_id,
    state ``active``, no last_error) and set ``allocation_id``, ``allocation_uuid`` and
    ``node_values`` on the node, only if the node still has no allocation and no
    instance_uuid (or ``instance_uuid``, when backfilling a deployed node). Raises
    :class:`Conflict` if it has (nothing is written then), :class:`NotFound`."""
    now = utcnow()
    free: Any = Node.instance_uuid.is_(None)
    if instance_uuid is not None:
        free = free | (Node.instance_uuid == instance_uuid)
    with db.write() as s:
        alloc = s.get(Allocation, alloc_id)
        if alloc is None:
            raise NotFound(f"Allocation {alloc_id} could not be found.")
        done = s.execute(
            sa.update(Node).where(Node.id == node_id, Node.allocation_id.is_(None), free)
            .values(allocation_id=alloc.id, allocation_uuid=alloc.uuid, updated_at=now,
                    **node_values))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"Node {node_id} was associated with another instance or "
                           "allocation meanwhile")
        alloc.node_id, alloc.state, alloc.last_error = node_id, "active", None
        alloc.updated_at = now
    return alloc


def destroy_allocation(db: Database, alloc: Allocation,
                       node_values: dict[str, Any] | None = None) -> None:
    """Delete ``alloc`` and, in the same transaction, free its node: ``allocation_id``,
    ``allocation_uuid`` cleared, ``instance_uuid`` too if it is the allocation's UUID (as
    Ironic's ``destroy_allocation``), and ``node_values`` set."""
    with db.write() as s:
        if alloc.node_id is not None:
            held = (Node.id == alloc.node_id) & (Node.allocation_id == alloc.id)
            s.execute(sa.update(Node).where(held, Node.instance_uuid == alloc.uuid)
                      .values(instance_uuid=None))
            s.execute(sa.update(Node).where(held).values(
                allocation_id=None, allocation_uuid=None, updated_at=utcnow(),
                **(node_values or {})))
        s.execute(sa.delete(Allocation).where(Allocation.id == alloc.id))


def delete_allocation_of_node(db: Database, node_id: int) -> None:
    """Delete the allocation holding node ``node_id``, if any, and clear the node's
    ``allocation_id``, ``allocation_uuid`` and ``instance_uuid`` in the same transaction
    (as a tear down does; the caller holds the node's lock), so a crash cannot leave the
    node pointing at a deleted allocation."""
    with db.write() as s:
        s.execute(sa.delete(Allocation).where(Allocation.node_id == node_id))
        s.execute(sa.update(Node).where(Node.id == node_id).values(
            allocation_id=None, allocation_uuid=None, instance_uuid=None,
            updated_at=utcnow()))


# ---- conductors (read) ---------------------------------------------------------------

def list_conductors(db: Database, limit: int | None = None, marker: str | None = None,
                    sort_key: str = "id", sort_dir: str = "asc") -> list[Conductor]:
    """Registered conductors (online or not), after the one named ``marker``.
    Raises :class:`Invalid` for a bad sort key or direction, :class:`NotFound` for an
    unknown marker."""
    _check_sort(sort_key, sort_dir,
                ("id", "hostname", "conductor_group", "created_at", "updated_at"))
    m = get_conductor(db, marker) if marker else None
    with db.read() as s:
        return list(s.scalars(_paged(sa.select(Conductor), Conductor, m, sort_key, sort_dir,
                                     limit)))


def get_conductor(db: Database, hostname: str) -> Conductor:
    """The conductor registered as ``hostname``. Raises :class:`NotFound`."""
    rows = rows_where(db, Conductor, hostname=hostname)
    if not rows:
        raise NotFound(f"Conductor {hostname} could not be found.")
    cond: Conductor = rows[0]
    return cond
