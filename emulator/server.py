"""The emulator: storage, STS, OSS and the HTTP server, startable in-process (`with
Emulator(...)`) or as the command line's process; and the hook that lets OSS send upload
callbacks.

The HTTP server and its request handler are in handler.py.
"""

from __future__ import annotations

import base64
import functools
import secrets
import threading
from pathlib import Path
from types import TracebackType

from emulator import callbacks
from emulator.clock import Clock
from emulator.config import PUBLIC_KEY_PATH, EmulatorConfig
from emulator.handler import (
    SOCKET_TIMEOUT_SECONDS,
    EmulatorHTTPServer,
    RequestHandler,
    new_request_id,
)
from emulator.oss import images
from emulator.oss.errors import OssError
from emulator.oss.imaging import STYLE_NAME, parse_process
from emulator.oss.keys import BUCKET_NAME
from emulator.oss.service import OssService
from emulator.oss.storage import ObjectRecord, Storage
from emulator.oss.wire import Request
from emulator.sts import CredentialError, Principal, StsService
from policies.evaluation import evaluate_all

# SOCKET_TIMEOUT_SECONDS and new_request_id stay importable from here for the emulator's users.
__all__ = ["SOCKET_TIMEOUT_SECONDS", "CallbackHook", "Emulator", "new_request_id"]


class CallbackHook:
    """Adapts the OSS pipeline to emulator.callbacks (parsing, facts, signing, sending)."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def parse(self, callback: str, callback_var: str | None) -> callbacks.CallbackSpec:
        try:
            return callbacks.parse_callback(callback, callback_var)
        except callbacks.CallbackArgumentError as exc:
            raise OssError(400, "InvalidArgument", exc.message) from None

    def send(
        self,
        spec: callbacks.CallbackSpec,
        *,
        request: Request,
        bucket: str,
        record: ObjectRecord,
        operation: str,
        requester: str,
    ) -> tuple[int, str, bytes]:
        emulator = self._emulator
        image = None
        try:
            handles = emulator.storage.open_segments(record)
        except FileNotFoundError:
            handles = []  # overwritten since it was stored: no image facts to report
        try:
            if handles:
                # Only the header of the first blob is read, whatever the object's size.
                image = images.image_info(handles[0][0])
        finally:
            for handle, _, _ in handles:
                handle.close()
        md5 = ""
        if record.object_type == "Normal" and "-" not in record.etag:
            md5 = base64.b64encode(bytes.fromhex(record.etag)).decode()
        facts = callbacks.ObjectFacts(
            bucket=bucket,
            key=record.key,
            etag=record.etag,
            size=record.size,
            mime_type=record.content_type,
            crc64=str(record.crc64),
            content_md5=md5,
            client_ip=request.client_ip,
            request_id=request.request_id,
            operation=operation,
            image=image,
            owner=emulator.config.account_id,
            requester=requester,
        )
        result = callbacks.send_callback(
            spec,
            facts,
            signer=emulator.signer,
            public_key_url=emulator.public_key_url,
            timeout=emulator.config.callback_timeout_seconds,
        )
        return result.status, result.content_type, result.body


@functools.cache
def _memory_signer() -> callbacks.CallbackSigner:
    """One callback key per process for in-memory emulators: RSA key generation is slow and
    a test suite starts many emulators."""
    return callbacks.CallbackSigner(None)


class Emulator:
    """The emulator: storage, STS, OSS and the HTTP server, startable in-process or as a CLI."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Clock()
        data_dir = Path(self.config.data_dir) if self.config.data_dir is not None else None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.storage = Storage(data_dir / "oss" if data_dir is not None else None)
        self.sts = StsService(self.config, self.clock, self._sealing_key(data_dir))
        self.signer = (
            _memory_signer()
            if data_dir is None
            else callbacks.CallbackSigner(data_dir / "callback-key.pem")
        )
        self.public_key_pem: bytes = self.signer.public_key_pem
        for bucket in self.config.buckets:
            if not BUCKET_NAME.match(bucket):
                raise ValueError(
                    f"invalid bucket name {bucket!r}: 3-63 characters of lowercase letters, "
                    "digits and hyphens, starting and ending with a letter or digit"
                )
            self.storage.create_bucket(bucket, region=self.config.region, now=self.clock.now())
        for name, process in self.config.image_styles.items():
            # A style is checked when it is configured, as OSS checks PutStyle.
            if not STYLE_NAME.match(name):
                raise ValueError(f"invalid image style name {name!r}")
            try:
                parse_process(process, {})
            except OssError as exc:
                raise ValueError(f"image style {name!r}: {exc.message}") from None
            if not process.startswith("image/"):
                raise ValueError(f"image style {name!r} must start with image/")
        self.oss = OssService(
            config=self.config,
            storage=self.storage,
            now=self.clock.now,
            resolve=self._resolve,
            evaluate=evaluate_all,
            callbacks=CallbackHook(self),
        )
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _sealing_key(data_dir: Path | None) -> bytes:
        """The key that seals session state into security tokens.

        Kept in the data dir so tokens issued before a restart stay valid, as they would on
        Alibaba Cloud; random per run in memory mode.
        """
        if data_dir is None:
            return secrets.token_bytes(32)
        key_path = data_dir / "sealing.key"
        if not key_path.exists():
            key_path.write_bytes(secrets.token_bytes(32))
            key_path.chmod(0o600)
        return key_path.read_bytes()

    def _resolve(self, access_key_id: str, security_token: str | None) -> Principal:
        try:
            return self.sts.resolve(access_key_id, security_token)
        except CredentialError as exc:
            raise OssError(exc.status, exc.code, exc.message) from None

    # -- lifecycle -------------------------------------------------------------------------------

    def _bind(self) -> EmulatorHTTPServer:
        if self._server is None:
            server = EmulatorHTTPServer((self.config.host, self.config.port), RequestHandler)
            server.emulator = self
            self._server = server
        return self._server

    @property
    def port(self) -> int:
        return self._bind().server_address[1]

    @property
    def endpoint(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - reported, not bound
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def public_key_url(self) -> str:
        return self.endpoint + PUBLIC_KEY_PATH

    def start(self) -> Emulator:
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"emulator:{self.port}"
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._bind().serve_forever(poll_interval=0.5)
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        self.storage.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
