"""OSS errors: one exception type carrying what the error XML and the status line need.

oss2 picks its exception class from the pair (HTTP status, Code), so every code here is spelled
exactly as OSS spells it and raised with the status OSS uses for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape


class OssError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        # Response headers the error needs (x-oss-next-append-position on 409).
        self.headers = dict(headers or {})
        # Extra XML elements OSS adds to some errors (StringToSign, Key, ...).
        self.extra = dict(extra or {})


def error_xml(
    *, code: str, message: str, request_id: str, host_id: str, extra: Mapping[str, str]
) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<Error>",
        f"  <Code>{escape(code)}</Code>",
        f"  <Message>{escape(message)}</Message>",
        f"  <RequestId>{escape(request_id)}</RequestId>",
        f"  <HostId>{escape(host_id)}</HostId>",
    ]
    lines += [f"  <{name}>{escape(value)}</{name}>" for name, value in extra.items()]
    lines.append("</Error>")
    return ("\n".join(lines) + "\n").encode()


# Constructors for the errors raised in more than one place, so status and code never drift apart.


def access_denied(message: str) -> OssError:
    return OssError(403, "AccessDenied", message)


def invalid_argument(message: str, **extra: str) -> OssError:
    return OssError(400, "InvalidArgument", message, extra=extra)


def invalid_request(message: str) -> OssError:
    return OssError(400, "InvalidRequest", message)


def malformed_xml(message: str = "The XML you provided was not well-formed.") -> OssError:
    return OssError(400, "MalformedXML", message)


def no_such_bucket(bucket: str) -> OssError:
    return OssError(
        404, "NoSuchBucket", "The specified bucket does not exist.", extra={"BucketName": bucket}
    )


def no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", extra={"Key": key})


def no_such_upload(upload_id: str) -> OssError:
    return OssError(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed.",
        extra={"UploadId": upload_id},
    )
