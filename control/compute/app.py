"""The compute API (Nova v2.1 compatible), port 8774.

Settings (``/etc/cirrus/compute.conf``; the scheduler and the conductor read the same file):

``[database] connection``, ``[keystone_authtoken]`` (see ``docs/auth-middleware.md``),
``[rpc] transport_url``, ``[policy] file``, and::

    [compute]
    service_down_time = 60         # seconds without a heartbeat before a service is down
    default_availability_zone = nova
    api_limit_max = 1000
    scheduler_timeout = 60
    [image]
    api_url =                      # optional; else the image endpoint of the user's catalog
    [network]
    api_url =                      # optional; else the network endpoint of the user's catalog
                                   # (none at all: servers boot without NIC)
    [volume]
    api_url =                      # optional; else the volumev3 (then block-storage) endpoint
                                   # of the user's catalog; may hold $(project_id)s
    [quota]
    instances = 10
    cores = 20
    ram = 51200
    key_pairs = 100
    metadata_items = 128

See ``docs/compute.md``.
"""

from __future__ import annotations

from flask import Flask

from control.common import auth, db, log, policy
from control.common import config as config_mod
from control.common.app import make_app
from control.compute import policies
from control.compute.api import (
    common,
    flavors,
    hosts,
    keypairs,
    quotas,
    servers,
    versions,
    volume_attachments,
)
from control.compute.rpc import LazyRPC

SERVICE = "compute"


def load_settings(conf: config_mod.Config) -> common.ComputeSettings:
    defaults = {
        name: conf.get_int("quota", name, value) for name, value in common.DEFAULT_QUOTAS.items()
    }
    return common.ComputeSettings(
        quota_defaults=defaults,
        service_down_time=conf.get_int("compute", "service_down_time", 60),
        default_availability_zone=conf.get("compute", "default_availability_zone", "nova"),
        image_api_url=conf.get_optional("image", "api_url") or None,
        network_api_url=conf.get_optional("network", "api_url") or None,
        volume_api_url=conf.get_optional("volume", "api_url") or None,
        auth_url=conf.get("keystone_authtoken", "auth_url", ""),
        limit_max=conf.get_int("compute", "api_limit_max", 1000),
        rpc=LazyRPC(
            conf.get("rpc", "transport_url"),
            scheduler_timeout=conf.get_float("compute", "scheduler_timeout", 60.0),
            exchange=conf.get("rpc", "exchange", "cirrus"),
        ),
    )


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 5)
    )
    settings = load_settings(conf)
    validator = auth.TokenValidator(conf)
    app = make_app(
        SERVICE,
        conf,
        [
            versions.bp,
            flavors.bp,
            keypairs.bp,
            quotas.bp,
            servers.bp,
            volume_attachments.bp,
            hosts.bp,
        ],
        validator,
        auth.www_authenticate(conf),
    )
    app.extensions["cirrus.compute"] = settings
    app.extensions["cirrus.auth"] = validator
    db.init_app(app, database)
    policy.init_app(app, policy.Enforcer(policies.RULES, conf.get_optional("policy", "file")))
    return app
