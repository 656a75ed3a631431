"""Structured logs: one JSON object per line, each carrying the request id it belongs to."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id == "-":
            # django.request logs 4xx/5xx after the middleware has returned (and reset the
            # context variable); the request it passes along still carries the id.
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        return True


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "message": record.getMessage(),
        }
        # Fields passed with `extra=` become keys of their own, for querying.
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        # django.request passes the request object; its repr carries the query string, where
        # signed URLs and tokens live. Keep the method and path only.
        request = payload.get("request")
        if hasattr(request, "path") and hasattr(request, "method"):
            payload["request"] = f"{request.method} {request.path}"
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class GunicornJsonFormatter(JsonFormatter):
    """Gunicorn's own lines as JSON too (wired in gunicorn.conf.py).

    Access lines are built from gunicorn's atoms (record.args), not from its text format, so
    every value is escaped properly; the request id is the X-Request-ID the app answered with.
    The query string is left out on purpose: signed URLs and tokens must not reach the logs.
    """

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args if isinstance(record.args, Mapping) else None
        if record.name != "gunicorn.access" or atoms is None:
            return super().format(record)
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": atoms.get("{x-request-id}o") or "-",
            "message": f"{atoms.get('m')} {atoms.get('U')} {atoms.get('s')}",
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": _int_or_none(atoms.get("s")),
            "bytes": _int_or_none(atoms.get("B")),
            "duration_ms": _int_or_none(atoms.get("M")),
            "remote_addr": atoms.get("h"),
            # gunicorn escapes quotes for its text format; json.dumps escapes them again.
            "user_agent": str(atoms.get("a") or "").replace('\\"', '"'),
        }
        return json.dumps(payload, default=str)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
