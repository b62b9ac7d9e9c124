"""gunicorn settings shared by every Cirrus API service.

Used as ``gunicorn -c python:control.common.gunicorn_conf -w N -b ADDR:PORT APP`` with APP such as
``'control.identity.app:create_app()'``, by the systemd units and the test servers alike.

Threaded workers keep client connections alive, so a client that sends many requests (the CLI,
the SDK, another service's token validation) does not pay a TCP handshake for each.
"""

import os

worker_class = "gthread"
threads = int(os.environ.get("CIRRUS_API_THREADS", "4"))
keepalive = 15
graceful_timeout = 10
timeout = 60
# Cirrus logs every request itself, with its request id (control.common.app).
accesslog = None
