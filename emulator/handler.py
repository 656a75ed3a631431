"""The HTTP side of the emulator: one server for STS and OSS on one port, plus the callback
public key and the emulator's stats.

Dispatch: a request is STS when its query has `Action=` (RPC style) or it carries
`x-acs-action` (ACS3) — StsService.is_sts_request decides; GET PUBLIC_KEY_PATH serves the PEM of
the key that signs upload callbacks; everything else is OSS.

The standard library's ThreadingHTTPServer is enough: it speaks HTTP/1.1 with keep-alive, and the
OSS layer reads request bodies and writes responses as streams (sendfile for object data), so a
1 GiB object never sits in memory. Every failure, down to a malformed request line, becomes OSS
error XML with an x-oss-request-id; sockets have a timeout so a stalled client cannot pin a
thread forever.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import secrets
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from emulator.config import PUBLIC_KEY_PATH, STATS_PATH
from emulator.oss.errors import OssError, error_xml
from emulator.oss.service import MAX_SINGLE_PUT
from emulator.oss.wire import BodyReader, Headers, Request, Response

if TYPE_CHECKING:
    from emulator.server import Emulator

logger = logging.getLogger("emulator")

SOCKET_TIMEOUT_SECONDS = 60
_MAX_STS_BODY = 64 * 1024
_HOST_ID = "oss-emulator.local"


def new_request_id() -> str:
    return secrets.token_hex(12).upper()


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-request is routine, not worth a traceback on stderr.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    server: EmulatorHTTPServer

    # -- plumbing of BaseHTTPRequestHandler ----------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm the second one
        # waits for the client's delayed ACK (~40 ms per response on Linux).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the emulator's clock: SDKs that correct their skew from it
        # (Android, ali-oss) then agree with the clock tests moved.
        moment = self.server.emulator.clock.now() if timestamp is None else timestamp
        return email.utils.formatdate(moment, usegmt=True)

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The query is left out: presigned URLs carry signatures and security tokens there.
        path = getattr(self, "path", "").split("?", 1)[0]
        command = getattr(self, "command", None) or "-"
        logger.debug("%s %s %s %s", self.address_string(), command, path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the base class (bad request line, headers too long...) as OSS XML."""
        # A request line too broken to parse leaves the base class thinking this is HTTP/0.9,
        # which has no status line; answer as the HTTP/1.1 server this is.
        self.request_version = "HTTP/1.1"
        codes = {400: "InvalidRequest", 414: "RequestURITooLong", 431: "RequestHeaderTooLarge"}
        error = OssError(
            code if code in codes else 400,
            codes.get(code, "InvalidRequest"),
            message or "The request is malformed.",
        )
        self.close_connection = True
        request_id = new_request_id()
        response = self._error_response(error, request_id, head=False)
        response.headers["x-oss-request-id"] = request_id
        self._send(response, head=False)

    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        request_id = new_request_id()
        head = self.command == "HEAD"
        body: BodyReader | None = None
        response: Response
        try:
            body = self._body_reader()
            request = self._request(body, request_id)
            path = request.raw_path
            if self.command == "OPTIONS" and request.headers.get("origin"):
                response = _preflight(request)
            elif path == PUBLIC_KEY_PATH and self.command in ("GET", "HEAD"):
                response = Response(
                    200, {"Content-Type": "application/x-pem-file"}, emulator.public_key_pem
                )
            elif path == STATS_PATH and self.command in ("GET", "HEAD"):
                stats = {"assume_role_calls": emulator.sts.assume_role_calls}
                response = Response(
                    200, {"Content-Type": "application/json"}, json.dumps(stats).encode()
                )
            elif emulator.sts.is_sts_request(
                self.command, path, request.query, request.headers.as_dict()
            ):
                raw_body = body.read_all(_MAX_STS_BODY)
                status, headers, payload = emulator.sts.handle(
                    self.command, path, request.raw_query, request.headers.as_dict(), raw_body
                )
                response = Response(status, dict(headers), payload)
            else:
                response = emulator.oss.handle(request)
        except OssError as error:
            response = self._error_response(error, request_id, head=head)
        except Exception:
            logger.exception(
                "internal error serving %s %s", self.command, self.path.split("?", 1)[0]
            )
            error = OssError(500, "InternalError", "We encountered an internal error.")
            response = self._error_response(error, request_id, head=head)
        if body is not None and not body.finished:
            # Read what the client is still sending, so it sees this response rather than a reset.
            if body.broken or not body.drain(MAX_SINGLE_PUT):
                self.close_connection = True
        elif body is not None and body.broken:
            self.close_connection = True
        response.headers["x-oss-request-id"] = request_id
        origin = self.headers.get("Origin")
        if origin:
            response.headers.setdefault("Access-Control-Allow-Origin", origin)
            response.headers.setdefault("Access-Control-Expose-Headers", _EXPOSED_HEADERS)
            response.headers.setdefault("Vary", "Origin")
        try:
            self._send(response, head=head)
        finally:
            response.close()

    def _body_reader(self) -> BodyReader:
        transfer_encoding = self.headers.get("Transfer-Encoding", "").lower()
        chunked = "chunked" in transfer_encoding
        length_text = self.headers.get("Content-Length")
        if chunked:
            return BodyReader(self.rfile, length=None, chunked=True)
        if length_text is None:
            return BodyReader(self.rfile, length=0, chunked=False)
        if not length_text.strip().isdigit():
            self.close_connection = True
            raise OssError(400, "InvalidArgument", "The Content-Length header is not a number.")
        return BodyReader(self.rfile, length=int(length_text.strip()), chunked=False)

    def _request(self, body: BodyReader, request_id: str) -> Request:
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        return Request(
            method=self.command,
            raw_path=raw_path or "/",
            raw_query=raw_query,
            headers=Headers(list(self.headers.items())),
            body=body,
            client_ip=self.client_address[0],
            request_id=request_id,
        )

    def _error_response(self, error: OssError, request_id: str, *, head: bool) -> Response:
        xml = error_xml(
            code=error.code,
            message=error.message,
            request_id=request_id,
            host_id=_HOST_ID,
            extra=error.extra,
        )
        if error.status == 304:
            return Response(304, dict(error.headers), b"")  # Not Modified has no error body
        headers = {"Content-Type": "application/xml", **error.headers}
        if head:
            # HEAD responses have no body: OSS carries the error XML, base64, in a header.
            headers["x-oss-err"] = base64.b64encode(xml).decode()
            return Response(error.status, headers, b"")
        return Response(error.status, headers, xml)

    def _send(self, response: Response, *, head: bool) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        length = headers.pop("Content-Length", None)
        if length is None or not head:
            length = str(response.content_length)
        if response.status in (204, 304):
            length = None
        for name, value in headers.items():
            self.send_header(name, value.encode("latin-1", "replace").decode("latin-1"))
        if length is not None:
            self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if head or response.status in (204, 304):
            self.wfile.flush()
            return
        if response.slices is not None:
            self.wfile.flush()
            for handle, offset, count in response.slices:
                if count:
                    self.connection.sendfile(handle, offset, count)
        elif response.body:
            self.wfile.write(response.body)
        self.wfile.flush()


# CORS: a bucket on OSS answers browsers per its CORS rules; the emulator is a development tool,
# so it allows every origin and exposes what the browser SDK (ali-oss) reads, ETag above all.
_EXPOSED_HEADERS = ", ".join(
    [
        "ETag",
        "x-oss-request-id",
        "x-oss-hash-crc64ecma",
        "x-oss-next-append-position",
        "x-oss-object-type",
        "Content-Length",
        "Content-Type",
        "Content-Range",
        "Last-Modified",
        "Date",
    ]
)


def _preflight(request: Request) -> Response:
    headers = {
        "Access-Control-Allow-Origin": request.headers.get("origin"),
        "Access-Control-Allow-Methods": "GET, PUT, POST, DELETE, HEAD",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
    requested = request.headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return Response(200, headers)
