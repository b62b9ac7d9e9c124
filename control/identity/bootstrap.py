"""``cirrus-manage identity bootstrap``: the default domain, the admin user and project, the roles
``admin`` > ``member`` > ``reader`` (and ``service``), and the identity entries of the catalog.

``cirrus-manage identity register-service``: another service's catalog entry and endpoints, and
its service user (a ``service`` role on the ``service`` project), as a deploy registers them.

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


def _project(
    sess: Session, domain_id: str, name: str, description: str, result: BootstrapResult
) -> models.Project:
    project = sess.scalar(
        select(models.Project).where(
            models.Project.domain_id == domain_id, models.Project.name == name
        )
    )
    if project is None:
        project = models.Project(name=name, domain_id=domain_id, description=description)
        sess.add(project)
        sess.flush()
        result.changed.append(f"project {name}")
    return project


def _user(
    sess: Session,
    project: models.Project,
    name: str,
    password: str,
    rounds: int,
    result: BootstrapResult,
) -> models.User:
    """The user, created or with its password and enabled flag brought in line."""
    user = sess.scalar(
        select(models.User).where(
            models.User.domain_id == project.domain_id, models.User.name == name
        )
    )
    if user is None:
        user = models.User(
            name=name,
            domain_id=project.domain_id,
            password_hash=passwords.hash_password(password, rounds),
            password_created_at=db.utcnow(),
            default_project_id=project.id,
            enabled=True,
        )
        sess.add(user)
        sess.flush()
        result.changed.append(f"user {name}")
    elif not passwords.check_password(password, user.password_hash):
        user.password_hash = passwords.hash_password(password, rounds)
        user.password_created_at = db.utcnow()
        result.changed.append(f"user {name} password")
    if not user.enabled:
        user.enabled = True
        result.changed.append(f"user {name} enabled")
    return user


def _assign(
    sess: Session,
    user: models.User,
    project: models.Project,
    role: models.Role,
    result: BootstrapResult,
) -> None:
    if sess.get(models.RoleAssignment, (user.id, "project", project.id, role.id)) is None:
        sess.add(
            models.RoleAssignment(
                user_id=user.id, target_type="project", target_id=project.id, role_id=role.id
            )
        )
        result.changed.append(f"{role.name} role of {user.name} on project {project.name}")


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

    project = _project(sess, domain.id, options.project_name, "Bootstrap project", result)
    user = _user(
        sess,
        project,
        options.admin_username,
        options.admin_password,
        options.password_rounds,
        result,
    )
    _assign(sess, user, project, roles["admin"], result)
    if options.identity_endpoints:
        ensure_endpoint(
            sess, "identity", "keystone", options.region_id, options.identity_endpoints, result
        )
    return result


@dataclass
class ServiceOptions:
    service_type: str
    service_name: str
    region_id: str
    endpoints: dict[str, str]
    username: str = ""
    password: str = ""
    project_name: str = "service"
    role_name: str = "service"
    password_rounds: int = passwords.MIN_ROUNDS


def register_service(sess: Session, options: ServiceOptions) -> BootstrapResult:
    """Catalog entry and endpoints of a service, and its user with ``role_name`` on
    ``project_name`` (created when missing; the password is brought in line). Needs a
    bootstrapped identity (the default domain and the roles)."""
    result = BootstrapResult()
    if sess.get(models.Domain, models.DEFAULT_DOMAIN_ID) is None:
        raise LookupError(
            "the default domain does not exist: run `cirrus-manage identity bootstrap`"
        )
    ensure_endpoint(
        sess,
        options.service_type,
        options.service_name,
        options.region_id,
        options.endpoints,
        result,
    )
    if not options.username:
        return result
    role = sess.scalar(select(models.Role).where(models.Role.name == options.role_name))
    if role is None:
        raise LookupError(
            f"role {options.role_name!r} does not exist: run `cirrus-manage identity bootstrap`"
        )
    project = _project(
        sess, models.DEFAULT_DOMAIN_ID, options.project_name, "Service users' project", result
    )
    user = _user(sess, project, options.username, options.password, options.password_rounds, result)
    _assign(sess, user, project, role, result)
    return result
