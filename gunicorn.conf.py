"""Gunicorn settings, read by `gunicorn config.wsgi` from the working directory."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A request is never slow because of the external system (it is called in the background),
# so anything running this long is stuck and its worker is replaced.
timeout = 30
# On SIGTERM, workers stop accepting and get this long to finish the requests they have.
graceful_timeout = 10
keepalive = 5
accesslog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
