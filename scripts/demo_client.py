"""`make demo`: play the mobile app against a running server (`make run` in another terminal).

Every step is what an Android or iOS app does, with the official Python SDK (oss2) standing in
for the mobile SDK:

  1. log in                    POST /api/auth/login/
  2. temporary credentials     GET  /api/sts/credentials/?scope=readwrite  -> oss2.StsAuth
  3. an upload ticket          POST /api/uploads/tickets/                  -> key + callback
  4. upload straight to OSS    PutObject with the ticket's x-oss-callback headers; OSS calls the
                               server back, the server records the upload and its JSON answer
                               comes back as the upload's response body
  5. list the uploads          GET  /api/uploads/
  6. download one              GET  /api/uploads/{id}/ -> signed URL -> GET the bytes

`run_demo()` is importable, so the test suite runs the same flow against a live server.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import oss2
import requests

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_FILE = Path(os.environ.get("RUN_VAR_DIR") or ROOT / "var") / "demo-credentials.json"
TIMEOUT = 15


class DemoError(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class DemoResult:
    upload_id: int
    key: str
    size: int
    downloaded: bytes
    uploaded: bytes


def demo_png(width: int = 64, height: int = 48) -> bytes:
    """A small valid PNG (a gradient), so the server records image width, height and format."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 180)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _check(response: requests.Response, step: str) -> dict:
    if response.status_code >= 400:
        raise DemoError(f"{step}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else {}


def run_demo(
    *,
    base_url: str,
    username: str,
    password: str,
    say: Callable[[str], None] = print,
    data: bytes | None = None,
    filename: str = "demo.png",
    content_type: str = "image/png",
    signature_version: str = "v4",
    path_style: bool = False,
) -> DemoResult:
    base_url = base_url.rstrip("/")
    body = data if data is not None else demo_png()
    http = requests.Session()

    say(f"1. Log in as {username!r} at {base_url}/api/auth/login/")
    tokens = _check(
        http.post(
            f"{base_url}/api/auth/login/",
            json={"username": username, "password": password},
            timeout=TIMEOUT,
        ),
        "log in",
    )
    http.headers["Authorization"] = f"Bearer {tokens['access']}"
    say("   got an access token (15 minutes) and a refresh token")

    say("2. Ask for temporary OSS credentials: GET /api/sts/credentials/?scope=readwrite")
    creds = _check(
        http.get(
            f"{base_url}/api/sts/credentials/", params={"scope": "readwrite"}, timeout=TIMEOUT
        ),
        "credentials",
    )
    if str(creds.get("StatusCode")) != "200":
        raise DemoError(f"credentials: {creds}")
    say(
        f"   AccessKeyId {creds['AccessKeyId']} (the secret and the {len(creds['SecurityToken'])}"
        "-character security token are not printed)"
    )
    say(
        f"   bucket {creds['Bucket']} at {creds['Endpoint']} ({creds['Region']}), "
        f"only under {creds['Prefix']}; expires {creds['Expiration']}, "
        f"refresh after {creds['RefreshAfter']}"
    )

    say(f"3. Ask for an upload ticket for {filename} ({len(body)} bytes, {content_type})")
    ticket = _check(
        http.post(
            f"{base_url}/api/uploads/tickets/",
            json={
                "filename": filename,
                "size": len(body),
                "content_type": content_type,
                "metadata": {"source": "make-demo"},
            },
            timeout=TIMEOUT,
        ),
        "ticket",
    )
    say(f"   key {ticket['key']}, valid until {ticket['expires_at']}")
    say(f"   callback to {ticket['callback']['callbackUrl']}")

    say("4. Upload straight to OSS with oss2 (StsAuth) and the ticket's callback headers")
    auth = oss2.StsAuth(
        creds["AccessKeyId"],
        creds["AccessKeySecret"],
        creds["SecurityToken"],
        auth_version=signature_version,
    )
    bucket = oss2.Bucket(
        auth,
        ticket.get("endpoint") or creds["Endpoint"],
        ticket.get("bucket") or creds["Bucket"],
        region=ticket.get("region") or creds["Region"],
        # oss2 uses path style for IP addresses and localhost by itself; a host name such as a
        # docker-compose service name needs it said (--path-style).
        is_path_style=bool(path_style),
        connect_timeout=TIMEOUT,
    )
    headers = dict(ticket["headers"])
    headers["Content-Type"] = content_type
    result = bucket.put_object(ticket["key"], body, headers=headers)
    answer_text = result.resp.read().decode("utf-8", "replace")
    if result.status != 200:
        # 203 CallbackFailed: the object was stored but the server could not be reached.
        raise DemoError(f"upload: OSS answered {result.status}: {answer_text[:300]}")
    answer = json.loads(answer_text)
    if not answer.get("ok"):
        raise DemoError(f"upload refused by the server: {answer}")
    upload_id = answer["upload"]["id"]
    say(f"   OSS request id {result.request_id}, ETag {result.etag}")
    say(f"   the server's answer, relayed by OSS: {json.dumps(answer, sort_keys=True)}")

    say("5. List my uploads: GET /api/uploads/")
    page = _check(http.get(f"{base_url}/api/uploads/", timeout=TIMEOUT), "list")
    for item in page["results"][:5]:
        dims = f" {item['image_width']}x{item['image_height']}" if item.get("image_width") else ""
        say(f"   #{item['id']} {item['filename']} {item['size']} B {item['content_type']}{dims}")
    if not any(item["id"] == upload_id for item in page["results"]):
        raise DemoError(f"list: upload {upload_id} is not in the first page")

    say(f"6. Download it: GET /api/uploads/{upload_id}/ gives a signed URL, valid a few minutes")
    detail = _check(http.get(f"{base_url}/api/uploads/{upload_id}/", timeout=TIMEOUT), "detail")
    download = requests.get(detail["download_url"], timeout=TIMEOUT)
    if download.status_code != 200:
        raise DemoError(f"download: HTTP {download.status_code} {download.text[:300]}")
    if download.content != body:
        raise DemoError("download: the bytes differ from what was uploaded")
    say(f"   {len(download.content)} bytes, identical to what was uploaded")
    say("Done: the object is in the bucket and its row is in the database (see the admin).")
    return DemoResult(
        upload_id=upload_id,
        key=ticket["key"],
        size=len(body),
        downloaded=download.content,
        uploaded=body,
    )


def _default_login() -> tuple[str | None, str | None]:
    if CREDENTIALS_FILE.is_file():
        demo = json.loads(CREDENTIALS_FILE.read_text()).get("demo", {})
        return demo.get("username"), demo.get("password")
    return None, None


def main(argv: list[str] | None = None) -> int:
    username, password = _default_login()
    port = os.environ.get("APP_PORT", "8000")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--username", default=username)
    parser.add_argument("--password", default=password)
    parser.add_argument("--file", type=Path, help="upload this file instead of a generated PNG")
    parser.add_argument("--content-type", help="with --file; default guessed from the name")
    parser.add_argument("--signature-version", choices=["v1", "v4"], default="v4")
    parser.add_argument("--path-style", action="store_true", help="for an OSS host name")
    args = parser.parse_args(argv)
    if not args.username or not args.password:
        parser.error(
            f"no demo user: start `make run` first (it writes {CREDENTIALS_FILE}) "
            "or pass --username and --password"
        )
    kwargs: dict = {}
    if args.file:
        import mimetypes

        kwargs["data"] = args.file.read_bytes()
        kwargs["filename"] = args.file.name
        kwargs["content_type"] = (
            args.content_type
            or mimetypes.guess_type(args.file.name)[0]
            or "application/octet-stream"
        )
    try:
        run_demo(
            base_url=args.base_url,
            username=args.username,
            password=args.password,
            signature_version=args.signature_version,
            path_style=args.path_style,
            **kwargs,
        )
    except requests.ConnectionError:
        print(
            f"\nCannot reach {args.base_url}: start `make run` in another terminal first.",
            file=sys.stderr,
        )
        return 1
    except (DemoError, oss2.exceptions.OssError) as exc:
        print(f"\nDemo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
