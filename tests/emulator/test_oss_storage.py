"""Storage: objects survive restarts of a data-dir emulator, uploads are atomic, CRCs combine."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import crcmod
import oss2
import pytest

from emulator import Emulator, EmulatorConfig
from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from emulator.oss.checksums import crc64, crc64_combine
from tests.emulator.conftest import BUCKET, assume_role, sts_bucket, user_policy

ROOT = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)


@pytest.mark.parametrize(("size_a", "size_b"), [(0, 0), (1, 0), (0, 7), (13, 1), (4096, 100003)])
def test_crc64_combine_matches_the_crc_of_the_concatenation(size_a, size_b):
    a, b = os.urandom(size_a), os.urandom(size_b)
    reference = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=(1 << 64) - 1, rev=True)
    assert crc64_combine(crc64(a), crc64(b), len(b)) == reference(a + b)


def test_objects_uploads_and_tokens_survive_a_restart(tmp_path):
    config = EmulatorConfig(port=0, data_dir=tmp_path / "data")
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        bucket.put_object("kept.txt", b"kept", headers={"x-oss-meta-a": "1"})
        bucket.append_object("log.txt", 0, b"one,")
        upload_id = bucket.init_multipart_upload("mp.bin").upload_id
        first = bucket.upload_part("mp.bin", upload_id, 1, b"p" * (100 * 1024))
        oss2.Bucket(ROOT, emu.endpoint, "made-later").create_bucket()
        creds = assume_role(emu, policy=user_policy("alice"))
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        got = bucket.get_object("kept.txt")
        assert got.read() == b"kept"
        assert got.headers["x-oss-meta-a"] == "1"
        assert bucket.append_object("log.txt", 4, b"two").next_position == 7
        assert bucket.get_object("log.txt").read() == b"one,two"
        second = bucket.upload_part("mp.bin", upload_id, 2, b"q")
        bucket.complete_multipart_upload(
            "mp.bin",
            upload_id,
            [oss2.models.PartInfo(1, first.etag), oss2.models.PartInfo(2, second.etag)],
        )
        assert bucket.get_object("mp.bin").read() == b"p" * (100 * 1024) + b"q"
        assert oss2.Bucket(ROOT, emu.endpoint, "made-later").get_bucket_info().name == "made-later"
        # The sealing key is kept in the data dir: tokens issued before the restart still work.
        sts_bucket(emu, creds, "v4").put_object("users/alice/after.txt", b"x")
        bucket.delete_object("kept.txt")
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        assert bucket.object_exists("kept.txt") is False
        assert sorted(o.key for o in oss2.ObjectIterator(bucket)) == [
            "log.txt",
            "mp.bin",
            "users/alice/after.txt",
        ]
        blobs = list((tmp_path / "data" / "oss" / "blobs").iterdir())
        # log.txt: one blob per append (2); mp.bin: its two parts; after.txt: 1; kept.txt: gone.
        assert len(blobs) == 5
        assert list((tmp_path / "data" / "oss" / "tmp").iterdir()) == []


def test_interrupted_upload_leaves_the_old_object_whole(tmp_path):
    config = EmulatorConfig(port=0, data_dir=tmp_path / "data")
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        bucket.put_object("doc.txt", b"original")
        request = oss2.http.Request("PUT", f"{emu.endpoint}/{BUCKET}/doc.txt", data=b"")
        ROOT._sign_request(request, BUCKET, "doc.txt")
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "Content-Length")
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            sock.sendall(
                f"PUT /{BUCKET}/doc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                f"{head}\r\n".encode()
                + b"x" * 50000
            )
            # The client dies mid-body.
        assert bucket.get_object("doc.txt").read() == b"original"
        # The partial body is discarded once the server notices the connection is gone.
        tmp = tmp_path / "data" / "oss" / "tmp"
        for _ in range(100):
            if not list(tmp.iterdir()):
                break
            threading.Event().wait(0.05)
        assert list(tmp.iterdir()) == []


def test_concurrent_writers_never_tear_an_object(emu, root_bucket):
    bodies = [bytes([65 + n]) * (300 * 1024) for n in range(6)]
    errors: list[BaseException] = []

    def write(body: bytes) -> None:
        try:
            bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
            for _ in range(3):
                bucket.put_object("contended.bin", body)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(body,)) for body in bodies]
    reads: list[bytes] = []

    def read() -> None:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        for _ in range(10):
            with contextlib.suppress(oss2.exceptions.NoSuchKey):
                reads.append(bucket.get_object("contended.bin").read())

    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    for thread in [*threads, reader]:
        thread.join(timeout=60)
    assert errors == []
    final = root_bucket.get_object("contended.bin").read()  # oss2 checks its CRC too
    assert final in bodies
    assert all(data in bodies for data in reads)


def test_cli_starts_serves_and_stops(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--memory", "--bucket", "cli-bucket"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        endpoint = first.rsplit(" ", 1)[1].strip()
        banner = [process.stdout.readline() for _ in range(6)]
        assert any("cli-bucket" in line for line in banner)
        assert any("/_emulator/callback-public-key.pem" in line for line in banner)
        bucket = oss2.Bucket(ROOT, endpoint, "cli-bucket")
        assert bucket.put_object("hello.txt", b"hi").status == 200
        assert bucket.get_object("hello.txt").read() == b"hi"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_cli_config_file_and_role_flags(tmp_path):
    from emulator.__main__ import build_config

    policy = tmp_path / "policy.json"
    policy.write_text('{"Version": "1", "Statement": []}')
    config = build_config(
        [
            "--port",
            "9200",
            "--memory",
            "--bucket",
            "a-bucket",
            "--bucket",
            "b-bucket",
            "--role",
            "acs:ram::123:role/uploader,7200",
            "--role-policy",
            str(policy),
            "--region",
            "cn-shanghai",
        ]
    )
    assert config.port == 9200
    assert config.data_dir is None
    assert config.buckets == ("a-bucket", "b-bucket")
    assert config.region == "cn-shanghai"
    assert [(r.arn, r.max_session_duration, r.policy) for r in config.roles] == [
        ("acs:ram::123:role/uploader", 7200, {"Version": "1", "Statement": []})
    ]
    file = tmp_path / "emulator.json"
    file.write_text(
        '{"port": 9300, "buckets": ["from-file"], "data_dir": "'
        + str(tmp_path / "d")
        + '", "roles": [{"arn": "acs:ram::1:role/r", "max_session_duration": 3600}]}'
    )
    from_file = build_config(["--config", str(file)])
    assert from_file.port == 9300
    assert from_file.buckets == ("from-file",)
    assert from_file.data_dir == tmp_path / "d"
    assert [r.arn for r in from_file.roles] == ["acs:ram::1:role/r"]
    defaults = build_config([])
    assert defaults.port == 9100
    assert defaults.data_dir == Path("var/emulator")


def test_damaged_metadata_does_not_stop_a_restart(tmp_path):
    config = EmulatorConfig(port=0, data_dir=tmp_path / "data")
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        bucket.put_object("good.txt", b"good")
        bucket.put_object("bad.txt", b"bad")
    objects = tmp_path / "data" / "oss" / "buckets" / BUCKET / "objects"
    damaged = next(p for p in objects.iterdir() if b"bad.txt" in p.read_bytes())
    damaged.write_text("{not json")
    (objects / ".half-written.json.abc.tmp").write_text("{")
    with Emulator(config) as emu:
        bucket = oss2.Bucket(ROOT, emu.endpoint, BUCKET)
        assert bucket.get_object("good.txt").read() == b"good"
        assert bucket.object_exists("bad.txt") is False
    assert not (objects / ".half-written.json.abc.tmp").exists()


@pytest.mark.parametrize("name", ["../escape", "UPPER", "a", "-dash-", "has_underscore"])
def test_invalid_bucket_names_are_refused_at_start(tmp_path, name):
    with pytest.raises(ValueError, match="invalid bucket name"):
        Emulator(EmulatorConfig(port=0, data_dir=tmp_path / "data", buckets=(name,)))
    assert not (tmp_path / "escape").exists()
