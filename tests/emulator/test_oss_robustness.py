"""Malformed input gets an OSS error response — never a traceback, a hang or a dead server."""

from __future__ import annotations

import base64
import http.client
import socket
from urllib.parse import quote, urlencode

import oss2
import pytest
import requests

from emulator import Emulator
from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from tests.emulator.conftest import BUCKET

ROOT = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)


def exchange(emu: Emulator, data: bytes, *, shut_write: bool = False):
    """Send raw bytes; return (status, headers, body) of the first response."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def signed(
    emu: Emulator,
    method: str,
    key: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    data: bytes = b"",
) -> requests.Response:
    """A correctly signed root request with whatever body and headers the test wants."""
    url = f"{emu.endpoint}/{BUCKET}/{quote(key, safe='')}"
    request = oss2.http.Request(method, url, data=data, params=params or {}, headers=headers or {})
    ROOT._sign_request(request, BUCKET, key)
    query = "?" + urlencode(params or {}).replace("=&", "&").rstrip("=") if params else ""
    return requests.request(
        method, url + query, data=data, headers=dict(request.headers), timeout=10
    )


def assert_oss_error(status: int, headers: dict, body: bytes, code: str) -> None:
    assert f"<Code>{code}</Code>".encode() in body, body
    assert b"<RequestId>" in body
    assert headers.get("x-oss-request-id")
    assert b"Traceback" not in body


def test_garbage_request_line(emu):
    status, headers, body = exchange(emu, b"HELLO\r\n\r\n")
    assert status == 400
    assert_oss_error(status, headers, body, "InvalidRequest")


def test_unknown_http_method(emu):
    status, headers, body = exchange(emu, b"BREW /app-uploads/x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 400
    assert_oss_error(status, headers, body, "InvalidRequest")


def test_header_line_too_long(emu):
    status, headers, body = exchange(
        emu, b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n"
    )
    assert status == 431
    assert_oss_error(status, headers, body, "RequestHeaderTooLarge")


def test_bad_content_length(emu):
    request = b"PUT /app-uploads/x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"
    status, headers, body = exchange(emu, request)
    assert status == 400
    assert_oss_error(status, headers, body, "InvalidArgument")


def test_malformed_chunked_body(emu):
    date = oss2.utils.http_date()
    request = (
        b"PUT /app-uploads/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        + f"Date: {date}\r\n".encode()
        + b"\r\nZZZ\r\nhello\r\n0\r\n\r\n"
    )
    status, headers, body = exchange(emu, request)
    assert status in (400, 403)
    assert b"<Code>" in body
    assert headers.get("Connection") == "close"


def test_body_shorter_than_content_length_does_not_hang(emu, root_bucket):
    request = oss2.http.Request("PUT", f"{emu.endpoint}/{BUCKET}/short.txt", data=b"x" * 100)
    ROOT._sign_request(request, BUCKET, "short.txt")
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "Content-Length")
    raw = (
        f"PUT /{BUCKET}/short.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n{head}\r\n"
    ).encode() + b"only ten b"
    status, headers, body = exchange(emu, raw, shut_write=True)
    assert status == 400
    assert_oss_error(status, headers, body, "InvalidRequest")
    assert root_bucket.object_exists("short.txt") is False


def test_chunked_body_is_decoded(emu, root_bucket):
    request = oss2.http.Request("PUT", f"{emu.endpoint}/{BUCKET}/chunked.txt", data=b"")
    ROOT._sign_request(request, BUCKET, "chunked.txt")
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "Content-Length")
    raw = (
        f"PUT /{BUCKET}/chunked.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{head}\r\n"
    ).encode() + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    status, _headers, body = exchange(emu, raw)
    assert status == 200, body
    assert root_bucket.get_object("chunked.txt").read() == b"hello world"


def test_keep_alive_survives_an_error(emu, root_bucket):
    root_bucket.put_object("k.txt", b"kept")
    session = requests.Session()
    denied = session.put(f"{emu.endpoint}/{BUCKET}/k.txt", data=b"x" * 100000, timeout=10)
    assert denied.status_code == 403
    url = root_bucket.sign_url("GET", "k.txt", 60)
    assert session.get(url, timeout=10).content == b"kept"


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part>",
        b"<Wrong/>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><CompleteMultipartUpload/>',
        b"<CompleteMultipartUpload><Part><PartNumber>99999</PartNumber><ETag>x</ETag></Part>"
        b"</CompleteMultipartUpload>",
    ],
)
def test_malformed_complete_multipart_xml(emu, root_bucket, body):
    upload_id = root_bucket.init_multipart_upload("mp.bin").upload_id
    response = signed(emu, "POST", "mp.bin", params={"uploadId": upload_id}, data=body)
    assert response.status_code == 400
    assert b"<Code>MalformedXML</Code>" in response.content or (
        b"<Code>InvalidPartNumber</Code>" in response.content
    )
    assert root_bucket.object_exists("mp.bin") is False


@pytest.mark.parametrize(
    "body",
    [b"<Delete>", b"<Delete><Quiet>true</Quiet></Delete>", b"<Other/>", b"\xff\xfe"],
)
def test_malformed_delete_xml(emu, body):
    import hashlib

    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    url = f"{emu.endpoint}/{BUCKET}/"
    request = oss2.http.Request(
        "POST", url, data=body, params={"delete": ""}, headers={"Content-MD5": md5}
    )
    ROOT._sign_request(request, BUCKET, "")
    response = requests.post(url + "?delete", data=body, headers=dict(request.headers), timeout=10)
    assert response.status_code == 400
    assert b"<Code>MalformedXML</Code>" in response.content


def test_bad_percent_encoding_in_key(emu):
    response = requests.get(f"{emu.endpoint}/{BUCKET}/%FF%FE", timeout=10)
    assert response.status_code == 400
    assert b"<Code>InvalidObjectName</Code>" in response.content


def test_key_too_long(root_bucket):
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        root_bucket.put_object("k" * 1024, b"x")
    assert (excinfo.value.status, excinfo.value.code) == (400, "InvalidObjectName")


@pytest.mark.parametrize(
    "authorization",
    ["OSS no-colon", "Bearer token", "OSS4-HMAC-SHA256 Credential=x", "OSS4-HMAC-SHA256 junk"],
)
def test_malformed_authorization_header(emu, authorization):
    response = requests.get(
        f"{emu.endpoint}/{BUCKET}/x",
        headers={"Authorization": authorization, "Date": oss2.utils.http_date()},
        timeout=10,
    )
    assert response.status_code in (400, 403)
    assert b"<Code>" in response.content
    assert response.headers["x-oss-request-id"]


def test_missing_or_bad_date(emu):
    for date in ("", "yesterday"):
        response = requests.get(
            f"{emu.endpoint}/{BUCKET}/x",
            headers={"Authorization": "OSS a:b", "Date": date},
            timeout=10,
        )
        assert response.status_code == 403
        assert b"<Code>AccessDenied</Code>" in response.content


def test_malformed_query_values(root_bucket, emu):
    with pytest.raises(oss2.exceptions.InvalidArgument):
        root_bucket.list_objects(max_keys="abc")  # type: ignore[arg-type]
    response = signed(emu, "GET", "", params={"list-type": "2", "continuation-token": "%%%"})
    assert response.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in response.content
    response = signed(emu, "POST", "a.txt", params={"append": "", "position": "-1"}, data=b"x")
    assert response.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in response.content


def test_unsupported_subresource(root_bucket):
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        root_bucket.get_object_acl("x.txt")
    assert (excinfo.value.status, excinfo.value.code) == (400, "NotImplemented")


def test_head_error_carries_x_oss_err(root_bucket):
    with pytest.raises(oss2.exceptions.NotFound) as excinfo:
        root_bucket.head_object("missing.txt")
    assert excinfo.value.code == "NoSuchKey"
    assert excinfo.value.request_id


def test_upload_part_with_bad_part_number(root_bucket):
    upload_id = root_bucket.init_multipart_upload("p.bin").upload_id
    with pytest.raises(oss2.exceptions.InvalidArgument):
        root_bucket.upload_part("p.bin", upload_id, 10001, b"x")


def test_server_still_serves_after_all_that(emu, root_bucket):
    exchange(emu, b"\x00\x01\x02garbage\r\n\r\n")
    exchange(emu, b"GET /" + b"%" * 10 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert root_bucket.put_object("alive.txt", b"yes").status == 200


def test_a_stalled_client_does_not_block_others(emu, root_bucket):
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as stalled:
        stalled.sendall(b"PUT /app-uploads/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n")
        # Headers never finish and the body never comes; everyone else is still served.
        assert root_bucket.put_object("fast.txt", b"fast").status == 200
        assert root_bucket.get_object("fast.txt").read() == b"fast"
