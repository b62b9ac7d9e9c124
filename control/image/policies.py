"""Default policy of the image API, with Glance's rule names. Operators override any rule in the
YAML file named by ``[policy] file`` in image.conf. Roles imply each other (admin > member >
reader) and tokens carry the implied roles, so ``role:reader`` admits members and admins too.

Which images a project may see at all (its own, public and community ones, shared ones it is a
member of; every image for ``context_is_admin``) is decided before these rules, as Glance's
database layer does: an image the caller cannot see answers 404, never 403. The rules then decide
what the caller may do. The target of every image rule is::

    project_id     the image's owner
    member_id      the caller's project when it is a member of the image, else empty
    visibility     public | private | shared | community
    visible_to_all True for public and community images

and for member rules ``member_id`` is the member acted on.
"""

from __future__ import annotations

from control.common.policy import BASE_RULES

_OWNER_MEMBER = "role:member and project_id:%(project_id)s"
_CAN_SEE = (
    "role:reader and (project_id:%(project_id)s or project_id:%(member_id)s "
    "or True:%(visible_to_all)s)"
)

RULES: dict[str, str] = {
    **BASE_RULES,
    "context_is_admin": "role:admin",
    # Images.
    "add_image": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "get_images": "rule:context_is_admin or role:reader",
    "get_image": f"rule:context_is_admin or ({_CAN_SEE})",
    "modify_image": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "delete_image": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "publicize_image": "rule:context_is_admin",
    "communitize_image": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    # Data.
    "upload_image": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "download_image": f"rule:context_is_admin or ({_CAN_SEE})",
    # Members.
    "add_member": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "delete_member": f"rule:context_is_admin or ({_OWNER_MEMBER})",
    "get_member": (
        "rule:context_is_admin or "
        "(role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
    ),
    "get_members": (
        "rule:context_is_admin or "
        "(role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
    ),
    "modify_member": "rule:context_is_admin or (role:member and project_id:%(member_id)s)",
    # Schemas.
    "get_schema": "role:reader or rule:context_is_admin or rule:service_role",
}
