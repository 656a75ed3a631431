"""`make demo`: play the mobile app against a running server (`make run` in another terminal).

It performs the sequence docs/mobile-integration.md describes, with the official Python SDK
(oss2) standing in for the mobile SDKs and scripts/mobile_client/ for the app's own code:

  1. log in                     POST /api/auth/login/ (a 401 later refreshes once, single-flight)
  2. temporary credentials      GET  /api/sts/credentials/?scope=readwrite, through a provider
                                that caches them like the SDKs' federation provider
  3. resume or abort            uploads a killed run left on disk: finished if their ticket is
                                still valid, aborted (AbortMultipartUpload) if it expired
  4. an upload ticket           POST /api/uploads/tickets/ -> key, content_type, headers
  5. upload straight to OSS     Content-Type from the ticket, the ticket's headers as given;
                                small files with PutObject, larger ones as a resumable multipart
                                upload whose ticket is saved to disk first. OSS calls the server
                                back and relays its JSON answer; on 203 CallbackFailed the app
                                asks POST /api/uploads/tickets/{id}/confirm/ instead of uploading
                                again
  6. list the uploads           GET  /api/uploads/
  7. download one               GET  /api/uploads/{id}/ -> signed URL -> GET the bytes
  8. switch user                log out, drop the provider (it holds the first user's keys),
                                log in as another user with a new session and a new provider

`run_demo()` is importable, so the test suite runs the same flow against a live server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import oss2
import requests

try:  # `python scripts/demo_client.py` (make demo) and `import scripts.demo_client` (tests)
    from scripts import mobile_client as app
except ImportError:  # pragma: no cover - run as a script from scripts/
    import mobile_client as app  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("RUN_VAR_DIR") or ROOT / "var")
CREDENTIALS_FILE = VAR / "demo-credentials.json"
TIMEOUT = app.TIMEOUT


class DemoError(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class DemoResult:
    upload_id: int
    key: str
    size: int
    downloaded: bytes
    uploaded: bytes
    parts_sent: int
    confirmed: bool
    resumed: list[app.UploadOutcome] = field(default_factory=list)
    aborted: list[dict] = field(default_factory=list)
    switched_key: str | None = None


def demo_png(width: int = 64, height: int = 48, *, noise: bool = False) -> bytes:
    """A valid PNG (a gradient, or random pixels that do not compress: a big file for the
    multipart path), so the server records image width, height and format."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    if noise:
        rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    else:
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


def _step(step: str, call: Callable[[], object]):
    try:
        return call()
    except app.ApiError as exc:
        raise DemoError(f"{step}: {exc}") from exc


def _accepted(answer: dict, step: str) -> dict:
    if not answer.get("ok"):
        raise DemoError(f"{step}: refused by the server: {answer}")
    return answer["upload"]


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
    state_dir: Path | None = None,
    part_size: int = app.MIN_PART_SIZE,
    after_part: Callable[[int], None] | None = None,
    switch_to: tuple[str, str] | None = None,
) -> DemoResult:
    base_url = base_url.rstrip("/")
    body = data if data is not None else demo_png()
    store = app.PendingUploads(Path(state_dir or VAR / "demo-uploads") / username)

    say(f"1. Log in as {username!r} at {base_url}/api/auth/login/")
    session = _step(
        "log in",
        lambda: app.AppSession.login(base_url=base_url, username=username, password=password),
    )
    say("   got an access token (15 minutes) and a refresh token (rotated on each refresh)")

    say("2. Temporary OSS credentials: GET /api/sts/credentials/?scope=readwrite")
    provider = app.AppCredentialsProvider(session)
    creds = _step("credentials", provider.answer)
    say(
        f"   AccessKeyId {creds['AccessKeyId']} (the secret and the {len(creds['SecurityToken'])}"
        "-character security token are not printed)"
    )
    say(
        f"   bucket {creds['Bucket']} at {creds['Endpoint']} ({creds['Region']}), "
        f"only under {creds['Prefix']}; expires {creds['Expiration']}, "
        f"refresh after {creds['RefreshAfter']}"
    )

    say(f"3. Uploads a killed run left in {store.directory}")
    resumed, aborted = _step(
        "resume",
        lambda: app.uploads_resume(
            session,
            provider,
            store,
            signature_version=signature_version,
            path_style=path_style,
        ),
    )
    for record in store.leftovers():
        record.unlink()  # the copies of the files resumed or aborted above
    for outcome in resumed:
        upload = _accepted(outcome.answer, "resume")
        say(f"   resumed #{upload['id']} {upload['key']}: {outcome.parts_sent} more part(s)")
    for record in aborted:
        say(f"   aborted {record['ticket']['key']}: its ticket expired")
    if not resumed and not aborted:
        say("   none")

    say(f"4. Ask for an upload ticket for {filename} ({len(body)} bytes, {content_type})")
    ticket = _step(
        "ticket",
        lambda: session.api(
            "POST",
            "/api/uploads/tickets/",
            json={
                "filename": filename,
                "size": len(body),
                "content_type": content_type,
                "metadata": {"source": "make-demo"},
            },
        ),
    )
    say(f"   key {ticket['key']}, valid until {ticket['expires_at']}")
    say(f"   Content-Type {ticket['content_type']}; headers {sorted(ticket['headers'])}")

    bucket = app.bucket_for(
        provider, ticket, signature_version=signature_version, path_style=path_style
    )
    if len(body) <= part_size:
        say("5. Upload straight to OSS: PutObject with the ticket's headers and Content-Type")
        outcome = _step("upload", lambda: app.put_small(session, bucket, ticket=ticket, data=body))
    else:
        say(
            f"5. Upload straight to OSS: resumable multipart, {part_size}-byte parts; the ticket "
            "is saved first"
        )
        # The file must outlive a killed process: the app's own copy, next to its ticket.
        store.directory.mkdir(parents=True, exist_ok=True)
        path = store.directory / f"{ticket['id']}.data"
        path.write_bytes(body)
        record = app.upload_start(store, ticket=ticket, path=path, part_size=part_size)
        outcome = _step(
            "upload",
            lambda: app.upload_continue(session, bucket, store, record, after_part=after_part),
        )
        path.unlink()
    if outcome.confirmed:
        say("   OSS answered 203 CallbackFailed; POST .../confirm/ settled it (no re-upload)")
    upload = _accepted(outcome.answer, "upload")
    upload_id = upload["id"]
    say(f"   the server's answer: {json.dumps(outcome.answer, sort_keys=True)}")

    say("6. List my uploads: GET /api/uploads/")
    page = _step("list", lambda: session.api("GET", "/api/uploads/"))
    for item in page["results"][:5]:
        dims = f" {item['image_width']}x{item['image_height']}" if item.get("image_width") else ""
        say(f"   #{item['id']} {item['filename']} {item['size']} B {item['content_type']}{dims}")
    if not any(item["id"] == upload_id for item in page["results"]):
        raise DemoError(f"list: upload {upload_id} is not in the first page")

    say(f"7. Download it: GET /api/uploads/{upload_id}/ gives a signed URL, valid a few minutes")
    detail = _step("detail", lambda: session.api("GET", f"/api/uploads/{upload_id}/"))
    download = requests.get(detail["download_url"], timeout=TIMEOUT)
    if download.status_code != 200:
        raise DemoError(f"download: HTTP {download.status_code} {download.text[:300]}")
    if download.content != body:
        raise DemoError("download: the bytes differ from what was uploaded")
    say(f"   {len(download.content)} bytes, identical to what was uploaded")

    switched_key = None
    if switch_to is not None:
        other, other_password = switch_to
        say(f"8. Switch user to {other!r}: log out, drop the provider, new session and provider")
        provider.forget()
        session.logout()
        session = _step(
            "switch",
            lambda: app.AppSession.login(
                base_url=base_url, username=other, password=other_password
            ),
        )
        provider = app.AppCredentialsProvider(session)
        small = demo_png(8, 8)
        ticket = _step(
            "switch ticket",
            lambda: session.api(
                "POST",
                "/api/uploads/tickets/",
                json={"filename": "switched.png", "size": len(small), "content_type": "image/png"},
            ),
        )
        bucket = app.bucket_for(
            provider, ticket, signature_version=signature_version, path_style=path_style
        )
        switched = _accepted(
            _step(
                "switch upload",
                lambda: app.put_small(session, bucket, ticket=ticket, data=small),
            ).answer,
            "switch upload",
        )
        switched_key = switched["key"]
        say(f"   uploaded {switched_key} under {provider.answer()['Prefix']}")
    session.close()
    say("Done: the objects are in the bucket and their rows in the database (see the admin).")
    return DemoResult(
        upload_id=upload_id,
        key=upload["key"],
        size=len(body),
        downloaded=download.content,
        uploaded=body,
        parts_sent=outcome.parts_sent,
        confirmed=outcome.confirmed,
        resumed=resumed,
        aborted=aborted,
        switched_key=switched_key,
    )


def _default_logins() -> dict[str, dict[str, str]]:
    if CREDENTIALS_FILE.is_file():
        return json.loads(CREDENTIALS_FILE.read_text())
    return {}


def _kill_after(parts: int) -> Callable[[int], None]:
    sent = []

    def after_part(_number: int) -> None:
        sent.append(_number)
        if len(sent) >= parts:
            print(f"   killing this process after {len(sent)} part(s) (SIGKILL)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return after_part


def main(argv: list[str] | None = None) -> int:
    logins = _default_logins()
    demo, admin = logins.get("demo", {}), logins.get("admin", {})
    port = os.environ.get("APP_PORT", "8000")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--username", default=demo.get("username"))
    parser.add_argument("--password", default=demo.get("password"))
    parser.add_argument("--file", type=Path, help="upload this file instead of a generated PNG")
    parser.add_argument("--content-type", help="with --file; default guessed from the name")
    parser.add_argument("--signature-version", choices=["v1", "v4"], default="v4")
    parser.add_argument("--path-style", action="store_true", help="for an OSS host name")
    parser.add_argument(
        "--part-size", type=int, default=app.MIN_PART_SIZE, help="bigger files go up multipart"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="where uploads in progress are kept (var/demo-uploads)"
    )
    parser.add_argument(
        "--kill-after-parts",
        type=int,
        help="SIGKILL this process after N parts; the next run resumes the upload",
    )
    parser.add_argument(
        "--switch-to",
        metavar="USERNAME:PASSWORD",
        help="the user to switch to at the end (default: the admin of make run)",
    )
    parser.add_argument("--no-switch", action="store_true", help="skip the user switch")
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
    if args.kill_after_parts:
        kwargs["after_part"] = _kill_after(args.kill_after_parts)
    if args.switch_to:
        other, _, other_password = args.switch_to.partition(":")
        kwargs["switch_to"] = (other, other_password)
    elif admin and not args.no_switch:
        kwargs["switch_to"] = (admin["username"], admin["password"])
    try:
        run_demo(
            base_url=args.base_url,
            username=args.username,
            password=args.password,
            signature_version=args.signature_version,
            path_style=args.path_style,
            part_size=args.part_size,
            state_dir=args.state_dir,
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
