"""The app as gunicorn serves it (appserver.wsgi), plus GET /gc-probe answering what the
worker's garbage collector holds as permanent: tests/deploy/test_gunicorn_gc.py."""

from __future__ import annotations

import gc
import json

from appserver.wsgi import application as app


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/gc-probe":
        return app(environ, start_response)
    body = json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
