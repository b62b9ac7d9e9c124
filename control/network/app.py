"""The network API (Neutron v2.0 compatible), port 9696.

Settings (``/etc/cirrus/network.conf``): ``[database] connection``, ``[keystone_authtoken]`` (see
``docs/auth-middleware.md``), ``[policy] file``, and::

    [network]
    vni_ranges = 1:1000            # VXLAN ids of tenant networks (comma-separated min:max)
    physical_networks =            # physnets flat/vlan networks may name (empty: any)
    global_physnet_mtu = 1500      # MTU of flat/vlan networks; VXLAN gets 50 less
    pagination_max_limit = 1000    # most items one list answers
    agent_down_time = 75           # seconds without a report before an agent is not alive
    [quota]
    network = 100                  # Neutron's defaults; -1 means unlimited
    subnet = 100
    port = 500
    router = 10
    floatingip = 50
    security_group = 10
    security_group_rule = 100
    [rpc]
    transport_url =                # optional: with it, agents are notified of changes (fanout)
    exchange = cirrus

See ``docs/network.md``.
"""

from __future__ import annotations

from flask import Flask

from control.common import auth, db, log, policy
from control.common import config as config_mod
from control.common.app import make_app
from control.network import models, policies, quota, render
from control.network.api import (
    agents,
    common,
    extensions,
    floatingips,
    networks,
    ports,
    quotas,
    routers,
    security_groups,
    subnets,
    versions,
)
from control.network.rpc import AgentNotifier

SERVICE = "network"


def load_settings(conf: config_mod.Config) -> common.NetworkSettings:
    section = "network"
    try:
        vni_ranges = networks.parse_vni_ranges(conf.get_list(section, "vni_ranges", ["1:1000"]))
    except ValueError as exc:
        raise config_mod.ConfigError(f"{conf.source}: [{section}] vni_ranges: {exc}") from None
    url = conf.get_optional("rpc", "transport_url")
    return common.NetworkSettings(
        vni_ranges=vni_ranges,
        physical_networks=conf.get_list(section, "physical_networks", []),
        global_physnet_mtu=conf.get_int(section, "global_physnet_mtu", 1500),
        quota_defaults={
            name: conf.get_int("quota", name, value) for name, value in quota.DEFAULT_QUOTAS.items()
        },
        limit_max=conf.get_int(section, "pagination_max_limit", 1000),
        agent_down_time=conf.get_int(section, "agent_down_time", 75),
        notifier=AgentNotifier(url, exchange=conf.get("rpc", "exchange", "cirrus"))
        if url
        else None,
    )


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    database = db.Database(
        conf.get("database", "connection"),
        pool_size=conf.get_int("database", "pool_size", 5),
        isolation_level=models.ISOLATION,
    )
    settings = load_settings(conf)
    validator = auth.TokenValidator(conf)
    app = make_app(
        SERVICE,
        conf,
        [
            versions.bp,
            extensions.bp,
            networks.bp,
            subnets.bp,
            ports.bp,
            security_groups.bp,
            routers.bp,
            floatingips.bp,
            quotas.bp,
            agents.bp,
        ],
        validator,
        auth.www_authenticate(conf),
    )
    app.extensions["cirrus.error_style"] = render.neutron_error
    app.extensions["cirrus.network"] = settings
    app.extensions["cirrus.auth"] = validator
    db.init_app(app, database)
    policy.init_app(app, policy.Enforcer(policies.RULES, conf.get_optional("policy", "file")))
    return app
