"""Image records: the image, its extra properties, tags and members.

The data itself is not in the database: it is a file named after the image id in the store
directory (see :mod:`control.image.store`). Deleting an image deletes its row, the rows hanging
from it and the file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from control.common.db import PRECISE_DATETIME, utcnow

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "deactivated")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_created_at_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(30), default="queued", index=True)
    visibility: Mapped[str] = mapped_column(String(20), default="shared", index=True)
    disk_format: Mapped[str | None] = mapped_column(String(20))
    container_format: Mapped[str | None] = mapped_column(String(20))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(32), index=True)
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128), index=True)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow, onupdate=utcnow)

    properties: Mapped[list[ImageProperty]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    tags: Mapped[list[ImageTag]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    members: Mapped[list[ImageMember]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="select", passive_deletes=True
    )

    def extra_properties(self) -> dict[str, str]:
        return {prop.name: prop.value for prop in self.properties}

    def tag_values(self) -> list[str]:
        return sorted(tag.value for tag in self.tags)


class ImageProperty(Base):
    """An extra property: any string attribute beside the core ones (``os_distro``...)."""

    __tablename__ = "image_properties"
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    image: Mapped[Image] = relationship(back_populates="properties")


class ImageTag(Base):
    __tablename__ = "image_tags"
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(255), primary_key=True)

    image: Mapped[Image] = relationship(back_populates="tags")


class ImageMember(Base):
    """A project an image is shared with, and whether that project accepted it."""

    __tablename__ = "image_members"
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow, onupdate=utcnow)

    image: Mapped[Image] = relationship(back_populates="members")
