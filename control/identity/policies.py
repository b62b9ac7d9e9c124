"""Default policy of the identity API. Operators override any rule in the YAML file named by
``[policy] file`` in identity.conf. Roles imply each other (admin > member > reader), and tokens
carry the implied roles, so ``role:reader`` admits members and admins too.

The target of each check is a flat mapping the view fills in, e.g. ``{"user_id": ...}`` for the
user acted on, ``{"project_id": ...}`` for the project.
"""

from __future__ import annotations

from control.common.policy import BASE_RULES

RULES: dict[str, str] = {
    **BASE_RULES,
    # Tokens. ``token_user_id`` is the owner of the token named by X-Subject-Token.
    "identity:validate_token": "rule:service_or_admin or user_id:%(token_user_id)s",
    "identity:revoke_token": "rule:service_or_admin or user_id:%(token_user_id)s",
    "identity:get_auth_catalog": "@",
    "identity:get_auth_projects": "@",
    "identity:get_auth_domains": "@",
    # Domains.
    "identity:get_domain": "rule:admin_required or domain_id:%(domain_id)s",
    "identity:list_domains": "rule:admin_required",
    "identity:create_domain": "rule:admin_required",
    "identity:update_domain": "rule:admin_required",
    "identity:delete_domain": "rule:admin_required",
    # Projects.
    "identity:get_project": "rule:admin_required or project_id:%(project_id)s",
    "identity:list_projects": "rule:admin_required",
    "identity:list_user_projects": "rule:admin_or_owner",
    "identity:create_project": "rule:admin_required",
    "identity:update_project": "rule:admin_required",
    "identity:delete_project": "rule:admin_required",
    # Users.
    "identity:get_user": "rule:admin_or_owner",
    "identity:list_users": "rule:admin_required",
    "identity:create_user": "rule:admin_required",
    "identity:update_user": "rule:admin_required",
    # A user changing only the ``description`` or ``email`` of their own record.
    "identity:update_own_user": "rule:owner",
    "identity:delete_user": "rule:admin_required",
    "identity:change_password": "rule:owner",
    # Roles and assignments.
    "identity:get_role": "role:reader or rule:admin_required",
    "identity:list_roles": "role:reader or rule:admin_required",
    "identity:create_role": "rule:admin_required",
    "identity:update_role": "rule:admin_required",
    "identity:delete_role": "rule:admin_required",
    "identity:list_implied_roles": "role:reader or rule:admin_required",
    "identity:get_implied_role": "role:reader or rule:admin_required",
    "identity:check_implied_role": "role:reader or rule:admin_required",
    "identity:list_role_inference_rules": "role:reader or rule:admin_required",
    "identity:create_implied_role": "rule:admin_required",
    "identity:delete_implied_role": "rule:admin_required",
    "identity:list_grants": "rule:admin_required or (role:reader and project_id:%(project_id)s)",
    "identity:check_grant": "rule:admin_required or (role:reader and project_id:%(project_id)s)",
    "identity:create_grant": "rule:admin_required",
    "identity:revoke_grant": "rule:admin_required",
    # ``/v3/role_assignments``: admins see all; others only their own project's (filter required).
    "identity:list_role_assignments": (
        "rule:admin_required or (role:reader and project_id:%(scope.project.id)s)"
    ),
    # Catalog.
    "identity:get_region": "@",
    "identity:list_regions": "@",
    "identity:create_region": "rule:admin_required",
    "identity:update_region": "rule:admin_required",
    "identity:delete_region": "rule:admin_required",
    "identity:get_service": "rule:admin_required or role:reader",
    "identity:list_services": "rule:admin_required or role:reader",
    "identity:create_service": "rule:admin_required",
    "identity:update_service": "rule:admin_required",
    "identity:delete_service": "rule:admin_required",
    "identity:get_endpoint": "rule:admin_required or role:reader",
    "identity:list_endpoints": "rule:admin_required or role:reader",
    "identity:create_endpoint": "rule:admin_required",
    "identity:update_endpoint": "rule:admin_required",
    "identity:delete_endpoint": "rule:admin_required",
}
