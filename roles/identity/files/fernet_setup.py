#!/usr/bin/env python3
"""Create a Fernet key repository once, on the deploy host: ``fernet_setup.py DIR``.

Keystone's layout (what control/identity/fernet.py reads): files named ``0`` (staged) and ``1``
(primary), each a Fernet key (URL-safe base64 of 32 random bytes); directory 0700, files 0600.
Does nothing when the directory already holds keys. Needs only the standard library, so it runs
with whichever Python runs Ansible.
"""

from __future__ import annotations

import base64
import os
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: fernet_setup.py DIR", file=sys.stderr)
        return 2
    path = sys.argv[1]
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    if any(name.isdigit() for name in os.listdir(path)):
        print(f"{path}: already set up")
        return 0
    for index in ("0", "1"):
        tmp = os.path.join(path, f".{index}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.urlsafe_b64encode(os.urandom(32)))
        os.replace(tmp, os.path.join(path, index))
    print(f"{path}: created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
