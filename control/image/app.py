"""The image API (Glance v2 compatible), port 9292.

Settings (``/etc/cirrus/image.conf``): ``[database] connection``, ``[keystone_authtoken]`` (see
``docs/auth-middleware.md``), ``[policy] file`` and the ``[image]`` section described in
``docs/image.md``.
"""

from __future__ import annotations

from flask import Flask

from control.common import auth, db, log, policy
from control.common import config as config_mod
from control.common.app import make_app
from control.image import policies
from control.image.api import common, data, images, members, schemas, tags, versions
from control.image.inspect import Inspector
from control.image.store import ImageStore

SERVICE = "image"

DEFAULT_STORE_DIR = "/var/lib/cirrus/images"
DEFAULT_MAX_UPLOAD_SIZE = 1024**4  # 1 TiB, Glance's image_size_cap


def load_settings(conf: config_mod.Config) -> common.ImageSettings:
    section = "image"
    store = ImageStore(
        conf.get(section, "store_dir", DEFAULT_STORE_DIR),
        chunk_size=conf.get_int(section, "chunk_size", 1024 * 1024),
    )
    inspector = Inspector(
        qemu_img=conf.get(section, "qemu_img", "qemu-img"),
        timeout=conf.get_float(section, "inspect_timeout", 30.0),
        memory_limit=conf.get_int(section, "inspect_memory_limit", 1024**3),
        cpu_limit=conf.get_int(section, "inspect_cpu_limit", 30),
    )
    return common.ImageSettings(
        store=store,
        inspector=inspector,
        max_upload_size=conf.get_int(section, "max_upload_size", DEFAULT_MAX_UPLOAD_SIZE),
        max_properties=conf.get_int(section, "max_properties", 128),
        max_tags=conf.get_int(section, "max_tags", 128),
        max_members=conf.get_int(section, "max_members", 128),
        limit_default=conf.get_int(section, "limit_param_default", 25),
        limit_max=conf.get_int(section, "api_limit_max", 1000),
    )


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 5)
    )
    settings = load_settings(conf)
    settings.store.ensure()
    validator = auth.TokenValidator(conf)
    app = make_app(
        SERVICE,
        conf,
        [versions.bp, schemas.bp, images.bp, data.bp, members.bp, tags.bp],
        validator,
        auth.www_authenticate(conf),
    )
    app.extensions["cirrus.image"] = settings
    app.extensions["cirrus.auth"] = validator
    db.init_app(app, database)
    policy.init_app(app, policy.Enforcer(policies.RULES, conf.get_optional("policy", "file")))
    return app
