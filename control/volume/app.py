"""The block storage API (Cinder v3 compatible, base microversion 3.0), port 8776.

Started as ``gunicorn 'control.volume.app:create_app()'``. Settings (``/etc/cirrus/volume.conf``,
``CIRRUS_VOLUME_CONFIG``): ``[DEFAULT] log_level, host``, ``[database] connection, pool_size``,
``[keystone_authtoken]`` (see ``docs/auth-middleware.md``), ``[policy] file``, ``[rpc]
transport_url, exchange`` and::

    [volume]
    default_availability_zone = nova
    default_volume_type = __DEFAULT__
    service_down_time = 60              # seconds without a report before a volume host is down
    max_over_subscription_ratio = 1.0   # capacity the scheduler may promise per reported GB
    image_api_url =                     # optional; else the catalog (type image), user's token
    rpc_timeout = 60                    # seconds initialize/terminate_connection wait
    pagination_max_limit = 1000
    [quota]
    volumes = 10
    gigabytes = 1000
    snapshots = 10
    per_volume_gigabytes = -1

See ``docs/volume.md`` and ``docs/block-storage-contract.md``.
"""

from __future__ import annotations

import socket

from flask import Flask

from control.common import auth, db, log, policy
from control.common import config as config_mod
from control.common.app import make_app
from control.volume import policies, quota, render
from control.volume.agentapi import LazyAgentAPI
from control.volume.api import actions, common, misc, snapshots, types, versions, volumes

SERVICE = "volume"


def settings(conf: config_mod.Config) -> common.VolumeSettings:
    section = "volume"
    url = conf.get_optional("rpc", "transport_url")
    rpc_timeout = conf.get_float(section, "rpc_timeout", 60.0)
    return common.VolumeSettings(
        quota_defaults={
            name: conf.get_int("quota", name, value) for name, value in quota.DEFAULT_QUOTAS.items()
        },
        default_availability_zone=conf.get(section, "default_availability_zone", "nova"),
        default_volume_type=conf.get(section, "default_volume_type", "__DEFAULT__"),
        service_down_time=conf.get_float(section, "service_down_time", 60.0),
        max_over_subscription_ratio=conf.get_float(section, "max_over_subscription_ratio", 1.0),
        image_api_url=conf.get(section, "image_api_url", ""),
        auth_url=conf.get("keystone_authtoken", "auth_url", ""),
        rpc_timeout=rpc_timeout,
        host=conf.get("DEFAULT", "host", socket.gethostname()),
        limit_max=conf.get_int(section, "pagination_max_limit", 1000),
        agents=LazyAgentAPI(url, conf.get("rpc", "exchange", "cirrus"), rpc_timeout)
        if url
        else None,
    )


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 5)
    )
    volume_settings = settings(conf)
    validator = auth.TokenValidator(conf)
    app = make_app(
        SERVICE,
        conf,
        [versions.bp, volumes.bp, actions.bp, snapshots.bp, types.bp, misc.bp],
        validator,
        auth.www_authenticate(conf),
    )
    app.before_request(versions.check_version)
    app.after_request(versions.echo_version)
    app.extensions["cirrus.error_style"] = render.cinder_error
    app.extensions["cirrus.volume"] = volume_settings
    app.extensions["cirrus.auth"] = validator
    db.init_app(app, database)
    policy.init_app(app, policy.Enforcer(policies.RULES, conf.get_optional("policy", "file")))
    return app
