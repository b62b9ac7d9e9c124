"""``cirrus-manage identity bootstrap``: the default domain, the admin user and project, the roles
``admin`` > ``member`` > ``reader`` (and ``service``), and the identity entries of the catalog.

Safe to run again: what exists is kept, what differs is brought in line, and nothing is written
when everything already matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common import db
from control.identity import models, passwords

ROLE_NAMES = ("admin", "member", "reader", "service")
IMPLICATIONS = (("admin", "member"), ("member", "reader"))


@dataclass
class BootstrapOptions:
    admin_password: str
    admin_username: str = "admin"
    project_name: str = "admin"
    region_id: str = "RegionOne"
    # interface -> URL, e.g. {"public": "http://ctl:5000/v3"}
    identity_endpoints: dict[str, str] = field(default_factory=dict)
    password_rounds: int = passwords.MIN_ROUNDS


@dataclass
class BootstrapResult:
    changed: list[str] = field(default_factory=list)


def _role(sess: Session, name: str, result: BootstrapResult) -> models.Role:
    role = sess.scalar(select(models.Role).where(models.Role.name == name))
    if role is None:
        role = models.Role(name=name)
        sess.add(role)
        sess.flush()
        result.changed.append(f"role {name}")
    return role


def ensure_endpoint(
    sess: Session,
    service_type: str,
    service_name: str,
    region_id: str,
    endpoints: dict[str, str],
    result: BootstrapResult,
) -> models.Service:
    """Register (or correct) a service and its endpoints; used for every service in the catalog."""
    if region_id and sess.get(models.Region, region_id) is None:
        sess.add(models.Region(id=region_id, description=""))
        sess.flush()
        result.changed.append(f"region {region_id}")
    service = sess.scalar(select(models.Service).where(models.Service.type == service_type))
    if service is None:
        service = models.Service(type=service_type, name=service_name, enabled=True)
        sess.add(service)
        sess.flush()
        result.changed.append(f"service {service_type}")
    for interface, url in endpoints.items():
        existing = sess.scalar(
            select(models.Endpoint).where(
                models.Endpoint.service_id == service.id,
                models.Endpoint.interface == interface,
                models.Endpoint.region_id == region_id,
            )
        )
        if existing is None:
            sess.add(
                models.Endpoint(
                    service_id=service.id, interface=interface, region_id=region_id, url=url
                )
            )
            result.changed.append(f"{service_type} {interface} endpoint")
        elif existing.url != url:
            existing.url = url
            result.changed.append(f"{service_type} {interface} endpoint url")
    return service


def bootstrap(sess: Session, options: BootstrapOptions) -> BootstrapResult:
    result = BootstrapResult()
    domain = sess.get(models.Domain, models.DEFAULT_DOMAIN_ID)
    if domain is None:
        domain = models.Domain(
            id=models.DEFAULT_DOMAIN_ID, name="Default", description="The default domain"
        )
        sess.add(domain)
        sess.flush()
        result.changed.append("domain Default")

    roles = {name: _role(sess, name, result) for name in ROLE_NAMES}
    for prior, implied in IMPLICATIONS:
        key = (roles[prior].id, roles[implied].id)
        if sess.get(models.ImpliedRole, key) is None:
            sess.add(models.ImpliedRole(prior_role_id=key[0], implied_role_id=key[1]))
            result.changed.append(f"{prior} implies {implied}")

    project = sess.scalar(
        select(models.Project).where(
            models.Project.domain_id == domain.id, models.Project.name == options.project_name
        )
    )
    if project is None:
        project = models.Project(
            name=options.project_name, domain_id=domain.id, description="Bootstrap project"
        )
        sess.add(project)
        sess.flush()
        result.changed.append(f"project {options.project_name}")

    user = sess.scalar(
        select(models.User).where(
            models.User.domain_id == domain.id, models.User.name == options.admin_username
        )
    )
    if user is None:
        user = models.User(
            name=options.admin_username,
            domain_id=domain.id,
            password_hash=passwords.hash_password(options.admin_password, options.password_rounds),
            password_created_at=db.utcnow(),
            default_project_id=project.id,
            enabled=True,
        )
        sess.add(user)
        sess.flush()
        result.changed.append(f"user {options.admin_username}")
    elif not passwords.check_password(options.admin_password, user.password_hash):
        user.password_hash = passwords.hash_password(
            options.admin_password, options.password_rounds
        )
        user.password_created_at = db.utcnow()
        result.changed.append(f"user {options.admin_username} password")
    if not user.enabled:
        user.enabled = True
        result.changed.append(f"user {options.admin_username} enabled")

    assignment_key = (user.id, "project", project.id, roles["admin"].id)
    if sess.get(models.RoleAssignment, assignment_key) is None:
        sess.add(
            models.RoleAssignment(
                user_id=user.id,
                target_type="project",
                target_id=project.id,
                role_id=roles["admin"].id,
            )
        )
        result.changed.append(f"admin role on project {options.project_name}")

    if options.identity_endpoints:
        ensure_endpoint(
            sess, "identity", "keystone", options.region_id, options.identity_endpoints, result
        )
    return result
