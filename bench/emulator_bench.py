"""Benchmark: the emulator's OSS against a plain loopback HTTP transfer of the same bytes.

    .venv/bin/python bench/emulator_bench.py [--small-count 200] [--large-mib 1024] [--dir DIR]

Runs, in one go and on the same machine:
- the emulator as a subprocess (`python -m emulator --data-dir ...`), driven by oss2;
- a trivial streaming http.server subprocess (PUT streams the body to a file, GET streams the file
  back), driven by `requests`;
and prints put/get of 1 MiB objects (operations per second), put/get of one large object (MB/s),
both sides and the ratio, and the emulator's peak resident memory (VmHWM from /proc) after the
large object has gone in and out. oss2 is measured as applications use it (CRC-64 checking on,
its default) and with enable_crc=False, which isolates the emulator from the client's own CRC cost.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import oss2
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.config import (  # noqa: E402 - after the path setup for running as a script
    DEFAULT_BUCKET,
    DEFAULT_ROOT_ACCESS_KEY_ID,
    DEFAULT_ROOT_ACCESS_KEY_SECRET,
)

CHUNK = 1 << 20


# -- the plain side ---------------------------------------------------------------------------


class _PlainHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    directory: Path

    def setup(self) -> None:
        super().setup()
        # Same socket option as the emulator, so neither side pays delayed-ACK stalls.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _path(self) -> Path:
        return self.directory / unquote(self.path.lstrip("/")).replace("/", "_")

    def do_PUT(self) -> None:
        left = int(self.headers["Content-Length"])
        with open(self._path(), "wb") as out:
            while left:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    break
                out.write(data)
                left -= len(data)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self._path()
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(path, "rb") as source:
            shutil.copyfileobj(source, self.wfile, CHUNK)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_plain(directory: Path) -> None:
    _PlainHandler.directory = directory
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# -- helpers --------------------------------------------------------------------------------------


def start(args: list[str], banner_lines: int) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(banner_lines)]
    return process, lines


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def make_file(path: Path, mib: int) -> None:
    block = os.urandom(16 * CHUNK)
    with open(path, "wb") as out:
        for _ in range(mib // 16):
            out.write(block)
        out.write(block[: (mib % 16) * CHUNK])


def same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(16 * CHUNK), fb.read(16 * CHUNK)
            if x != y:
                return False
            if not x:
                return True


def row(label: str, emulator: float, plain: float, unit: str) -> str:
    return f"{label:<38} {emulator:>10.1f} {plain:>10.1f} {unit:<6} ratio {emulator / plain:.2f}"


# -- the run --------------------------------------------------------------------------------------


def run(small_count: int, large_mib: int, workdir: Path) -> None:
    emu_dir, plain_dir, files = workdir / "emulator", workdir / "plain", workdir / "files"
    for directory in (emu_dir, plain_dir, files):
        directory.mkdir(parents=True)
    emulator, banner = start(
        [sys.executable, "-m", "emulator", "--port", "0", "--data-dir", str(emu_dir)], 7
    )
    endpoint = banner[0].rsplit(" ", 1)[1].strip()
    plain, port_line = start([sys.executable, __file__, "--plain-server", str(plain_dir)], 1)
    plain_url = f"http://127.0.0.1:{port_line[0].strip()}"
    try:
        auth = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)
        bucket = oss2.Bucket(auth, endpoint, DEFAULT_BUCKET)
        bucket_nocrc = oss2.Bucket(auth, endpoint, DEFAULT_BUCKET, enable_crc=False)
        session = requests.Session()
        small = os.urandom(CHUNK)
        print(f"emulator {endpoint} (pid {emulator.pid}), plain {plain_url} (pid {plain.pid})")
        print(f"idle emulator RSS: {rss_mib(emulator.pid):.1f} MiB\n")
        print(f"{'':<38} {'emulator':>10} {'plain':>10}")

        def small_puts(client) -> None:
            for n in range(small_count):
                client.put_object(f"small/{n}", small)

        def small_gets(client) -> None:
            for n in range(small_count):
                assert len(client.get_object(f"small/{n}").read()) == CHUNK

        def plain_puts() -> None:
            for n in range(small_count):
                session.put(f"{plain_url}/small/{n}", data=small).raise_for_status()

        def plain_gets() -> None:
            for n in range(small_count):
                assert len(session.get(f"{plain_url}/small/{n}").content) == CHUNK

        plain_put = small_count / timed(plain_puts)
        plain_get = small_count / timed(plain_gets)
        for label, client in (("oss2 (crc on)", bucket), ("oss2 (crc off)", bucket_nocrc)):
            put_rate = small_count / timed(lambda c=client: small_puts(c))
            get_rate = small_count / timed(lambda c=client: small_gets(c))
            print(row(f"PUT 1 MiB, {label}", put_rate, plain_put, "ops/s"))
            print(row(f"GET 1 MiB, {label}", get_rate, plain_get, "ops/s"))

        source = files / "large.bin"
        make_file(source, large_mib)
        back = files / "back.bin"

        def plain_large_put() -> None:
            with open(source, "rb") as body:
                session.put(f"{plain_url}/large", data=body).raise_for_status()

        def plain_large_get() -> None:
            with (
                session.get(f"{plain_url}/large", stream=True) as response,
                open(back, "wb") as out,
            ):
                for data in response.iter_content(CHUNK):
                    out.write(data)

        plain_put_mbs = large_mib / timed(plain_large_put)
        plain_get_mbs = large_mib / timed(plain_large_get)
        assert same_file(source, back)
        back.unlink()
        (plain_dir / "large").unlink()
        for label, client in (("oss2 (crc on)", bucket), ("oss2 (crc off)", bucket_nocrc)):
            put_mbs = large_mib / timed(lambda c=client: c.put_object_from_file("large", source))
            get_mbs = large_mib / timed(lambda c=client: c.get_object_to_file("large", str(back)))
            assert same_file(source, back)
            back.unlink()
            print(row(f"PUT {large_mib} MiB, {label}", put_mbs, plain_put_mbs, "MB/s"))
            print(row(f"GET {large_mib} MiB, {label}", get_mbs, plain_get_mbs, "MB/s"))
        print(
            f"\nemulator peak RSS (VmHWM) after {large_mib} MiB in and out: "
            f"{peak_rss_mib(emulator.pid):.1f} MiB (target < 100 MB); "
            f"plain server peak: {peak_rss_mib(plain.pid):.1f} MiB"
        )
    finally:
        for process in (emulator, plain):
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--plain-server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        serve_plain(args.plain_server)
        return
    workdir = Path(tempfile.mkdtemp(prefix="emulator-bench-", dir=args.dir))
    try:
        run(args.small_count, args.large_mib, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
