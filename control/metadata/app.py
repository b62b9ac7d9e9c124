"""The metadata API (Nova's metadata service), port 8775.

Settings (``/etc/cirrus/metadata.conf``)::

    [DEFAULT]
    log_level = INFO
    [database]
    connection = mysql+pymysql://...   # the compute database: only read
    pool_size = 5
    [metadata]
    shared_secret = ...                # required: the l3 agent's metadata proxy signs with it
    dhcp_domain = novalocal            # appended to host names ("" for none), Nova's default
    default_availability_zone = nova   # for instances that have none recorded

No database of its own (nothing for ``cirrus-manage``). See ``docs/metadata.md``.
"""

from __future__ import annotations

import logging

from flask import Flask
from gunicorn.errors import AppImportError

from control.common import config as config_mod
from control.common import db, errors, log
from control.common.app import make_app
from control.common.context import RequestContext
from control.metadata import api

SERVICE = "metadata"

LOG = logging.getLogger("cirrus.metadata")


class MetadataConfigError(config_mod.ConfigError, AppImportError):
    """A setting the service cannot start without. Being gunicorn's ``AppImportError`` too, its
    message is printed alone, on one line, and gunicorn stops instead of restarting workers."""


def _no_tokens(token: str) -> RequestContext:
    # Every view is public: guests have no token; the proxy's signature guards them.
    raise errors.Unauthorized()


def load_settings(conf: config_mod.Config) -> api.MetadataSettings:
    secret = conf.get_optional("metadata", "shared_secret")
    if not secret:
        raise MetadataConfigError(
            f"{conf.source}: [metadata] shared_secret is required (the metadata proxy's "
            "signing secret); refusing to start without it"
        )
    return api.MetadataSettings(
        shared_secret=secret,
        dhcp_domain=conf.get("metadata", "dhcp_domain", "novalocal").strip("."),
        default_availability_zone=conf.get("metadata", "default_availability_zone", "nova"),
    )


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    settings = load_settings(conf)
    connection = conf.get_optional("database", "connection")
    if not connection:
        raise MetadataConfigError(f"{conf.source}: [database] connection is required")
    database = db.Database(connection, pool_size=conf.get_int("database", "pool_size", 5))
    app = make_app(SERVICE, conf, [api.bp], _no_tokens, lambda: "")
    app.extensions["cirrus.metadata"] = settings
    db.init_app(app, database)
    return app
