"""SQLAlchemy 2 models: nodes, ports, portgroups and conductors, with Ironic's field names.

Only portable types are used (JSON, String, Boolean, DateTime): the same schema runs on
SQLite and PostgreSQL. Times are stored and returned as timezone-aware UTC. This module
holds no business rules; those live in the conductor and lifecycle.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Conductor", "Node", "Port", "Portgroup", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A DateTime that always comes back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: sa.JSON,
        list[str]: sa.JSON,
        dt.datetime: UTCDateTime,
    }


class _Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None, onupdate=utcnow)


class Node(_Timestamps, Base):
    """One physical server (Ironic's node)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    driver: Mapped[str] = mapped_column(sa.String(64))
    driver_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    driver_internal_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    instance_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    instance_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provision_state: Mapped[str] = mapped_column(sa.String(32), index=True)
    target_provision_state: Mapped[str | None] = mapped_column(sa.String(32))
    provision_updated_at: Mapped[dt.datetime | None] = mapped_column()
    power_state: Mapped[str | None] = mapped_column(sa.String(32))
    target_power_state: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    maintenance: Mapped[bool] = mapped_column(default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(sa.Text)
    reservation: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    reservation_purpose: Mapped[str | None] = mapped_column(sa.String(255))
    traits: Mapped[list[str]] = mapped_column(default=list)
    resource_class: Mapped[str | None] = mapped_column(sa.String(80))
    conductor_group: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    owner: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    lessee: Mapped[str | None] = mapped_column(sa.String(255))
    boot_interface: Mapped[str | None] = mapped_column(sa.String(64))
    bios_interface: Mapped[str | None] = mapped_column(sa.String(64))
    deploy_interface: Mapped[str | None] = mapped_column(sa.String(64))
    inspect_interface: Mapped[str | None] = mapped_column(sa.String(64))
    management_interface: Mapped[str | None] = mapped_column(sa.String(64))
    power_interface: Mapped[str | None] = mapped_column(sa.String(64))
    inspection_started_at: Mapped[dt.datetime | None] = mapped_column()
    inspection_finished_at: Mapped[dt.datetime | None] = mapped_column()


class Portgroup(_Timestamps, Base):
    """A bond/LAG of a node's ports (Ironic's portgroup)."""

    __tablename__ = "portgroups"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    address: Mapped[str | None] = mapped_column(sa.String(18), unique=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id"), index=True)
    mode: Mapped[str | None] = mapped_column(sa.String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    standalone_ports_supported: Mapped[bool] = mapped_column(default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Port(_Timestamps, Base):
    """One physical NIC of a node (Ironic's bare-metal port)."""

    __tablename__ = "ports"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    address: Mapped[str] = mapped_column(sa.String(18), unique=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id"), index=True)
    portgroup_id: Mapped[int | None] = mapped_column(sa.ForeignKey("portgroups.id"))
    local_link_connection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    physical_network: Mapped[str | None] = mapped_column(sa.String(64))
    pxe_enabled: Mapped[bool] = mapped_column(default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Conductor(_Timestamps, Base):
    """A running conductor; ``updated_at`` is its heartbeat."""

    __tablename__ = "conductors"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(sa.String(255), unique=True)
    conductor_group: Mapped[str] = mapped_column(sa.String(255), default="")
    online: Mapped[bool] = mapped_column(default=True)
    drivers: Mapped[list[str]] = mapped_column(default=list)
