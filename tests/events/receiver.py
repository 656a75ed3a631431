"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 that checks each request's
signature as docs/events.md tells receivers to, records what came, and answers as the test
scripts it (a status, a delay, or a hold until released)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field

from events.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_valid
from tests.helpers import LocalServer


@dataclass
class Received:
    event_id: str
    body: dict
    signed: bool  # the signature checked out with the receiver's secret
    headers: dict
    at: float


@dataclass
class Receiver:
    secret: str = ""
    received: list[Received] = field(default_factory=list)
    # Answers for the next requests, in order; then 200. An int is a status; ("sleep", s) waits
    # s seconds then answers 200; "hold" waits until release().
    script: list = field(default_factory=list)
    # Event id -> how many more times to answer 500 to it.
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    def start(self, tls=None) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                answer = receiver._next(self.headers.get(EVENT_ID_HEADER, ""))
                record = Received(
                    event_id=self.headers.get(EVENT_ID_HEADER, ""),
                    body=json.loads(raw),
                    signed=signature_valid(
                        secret=receiver.secret,
                        header=self.headers.get(SIGNATURE_HEADER, ""),
                        body=raw,
                    ),
                    headers=dict(self.headers),
                    at=time.time(),
                )
                with receiver.lock:
                    receiver.received.append(record)  # on arrival: a cut-off request counts
                if answer == "hold":
                    receiver.holding.set()
                    receiver.released.wait(60)
                    answer = 200
                elif isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "2")
                self.end_headers()
                # The worker may have given up waiting (a timeout the test asked for).
                with contextlib.suppress(OSError):
                    self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = LocalServer(Handler, tls=tls)
        self.url = self.server.url + "/hooks/appserver"

    def _next(self, event_id: str):
        with self.lock:
            if self.failures.get(event_id):
                self.failures[event_id] -= 1
                return 500
            return self.script.pop(0) if self.script else 200

    def release(self) -> None:
        self.released.set()

    def ids(self) -> list[str]:
        with self.lock:
            return [r.event_id for r in self.received]

    def close(self) -> None:
        self.released.set()
        self.server.close()
