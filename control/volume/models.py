"""Block storage records: volumes with their metadata and attachments, snapshots, volume types,
the volume services (one row per agent host, refreshed by its reports), quotas and the per-project
lock rows that serialise quota checks.

Rows are deleted for real (no soft delete): a volume's row goes when its agent reported it
deleted (``volume_deleted``), and its quota usage with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from control.common.db import PRECISE_DATETIME, utcnow

DEFAULT_TYPE_ID = "00000000-0000-0000-0000-000000000001"
DEFAULT_TYPE_NAME = "__DEFAULT__"

VOLUME_STATUSES = (
    "creating",
    "available",
    "attaching",
    "in-use",
    "detaching",
    "deleting",
    "error",
    "error_deleting",
    "error_extending",
    "extending",
    "maintenance",
    "reserved",
)
"""Every status a volume may have (what ``os-reset_status`` and the agents may set)."""


class Base(DeclarativeBase):
    pass


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME, default=None)

    def touch(self) -> None:
        self.updated_at = utcnow()


class VolumeType(Timestamps, Base):
    __tablename__ = "volume_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class Volume(Timestamps, Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="creating", index=True)
    attach_status: Mapped[str] = mapped_column(String(32), default="detached")
    host: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    volume_type_id: Mapped[str] = mapped_column(ForeignKey("volume_types.id"))
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    source_volid: Mapped[str | None] = mapped_column(String(36), default=None)
    image_id: Mapped[str | None] = mapped_column(String(36), default=None)
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    image_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    launched_at: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME, default=None)

    volume_type: Mapped[VolumeType] = relationship(lazy="joined")
    metadata_items: Mapped[list[VolumeMetadata]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True
    )
    attachments: Mapped[list[VolumeAttachment]] = relationship(
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="VolumeAttachment.created_at",
    )

    def metadata_dict(self) -> dict[str, str]:
        return {item.key: item.value for item in self.metadata_items}

    def set_metadata(self, values: dict[str, str]) -> None:
        """Replace the metadata with ``values``."""
        current = {item.key: item for item in self.metadata_items}
        for key, item in current.items():
            if key not in values:
                self.metadata_items.remove(item)
        for key, value in values.items():
            if key in current:
                current[key].value = value
            else:
                self.metadata_items.append(VolumeMetadata(key=key, value=value))


class VolumeMetadata(Base):
    __tablename__ = "volume_metadata"

    volume_id: Mapped[str] = mapped_column(
        ForeignKey("volumes.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), default="")


class VolumeAttachment(Timestamps, Base):
    """One attachment of a volume: made by ``os-initialize_connection`` (or ``os-attach``) for
    a connector host, completed by ``os-attach``, removed by ``os-detach``."""

    __tablename__ = "volume_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    instance_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    attached_host: Mapped[str | None] = mapped_column(String(255), default=None)
    mountpoint: Mapped[str | None] = mapped_column(String(255), default=None)
    attach_status: Mapped[str] = mapped_column(String(32), default="attaching")
    attach_mode: Mapped[str] = mapped_column(String(8), default="rw")
    attach_time: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME, default=None)
    connector: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    connection_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Snapshot(Timestamps, Base):
    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), default="")
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="creating")
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Service(Timestamps, Base):
    """A volume service (``cinder-volume`` on an agent host); ``updated_at`` is its last report.
    The scheduler locks these rows while it places a volume."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", name="uniq_services_host_binary"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    backend_name: Mapped[str] = mapped_column(String(255), default="")
    total_capacity_gb: Mapped[float] = mapped_column(Float, default=0.0)
    free_capacity_gb: Mapped[float] = mapped_column(Float, default=0.0)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), default=None)


class Quota(Base):
    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class ProjectLock(Base):
    """One row per project, locked (``SELECT ... FOR UPDATE``) by every request that checks the
    project's quota and then creates or grows something, until it commits: two such requests
    of one project never count at the same time."""

    __tablename__ = "project_locks"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
