"""Every OSS operation the emulator serves, driven by oss2 with root keys and with alice's STS
credentials over signature V1 and V4."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import crcmod
import oss2
import pytest
import requests

from emulator.config import DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET
from tests.emulator.conftest import BUCKET, REGION

_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)


def _md5(data: bytes):
    return hashlib.md5(data, usedforsecurity=False)


def md5_etag(data: bytes) -> str:
    return _md5(data).hexdigest().upper()


def test_crc64_check_value_matches_oss():
    from emulator.oss.checksums import crc64

    assert crc64(b"Anything you're good at contributes to happiness.") == 108247482078852440


def test_put_get_head_meta_delete(alice):
    key = "users/alice/photo.jpg"
    data = os.urandom(3000)
    put = alice.put_object(key, data, headers={"x-oss-meta-origin": "phone"})
    assert put.status == 200
    assert put.etag == md5_etag(data)
    assert put.crc == _crc64(data)
    assert put.request_id

    got = alice.get_object(key)
    assert got.read() == data
    assert got.content_type == "image/jpeg"
    assert got.headers["x-oss-meta-origin"] == "phone"
    assert got.headers["ETag"] == f'"{md5_etag(data)}"'
    assert got.headers["x-oss-object-type"] == "Normal"
    assert got.server_crc == _crc64(data)

    head = alice.head_object(key)
    assert head.content_length == 3000
    assert head.etag == md5_etag(data)
    assert head.object_type == "Normal"
    assert head.headers["Last-Modified"].endswith(" GMT")

    meta = alice.get_object_meta(key)
    assert meta.content_length == 3000
    assert meta.etag == md5_etag(data)

    assert alice.object_exists(key) is True
    assert alice.delete_object(key).status == 204
    assert alice.object_exists(key) is False
    with pytest.raises(oss2.exceptions.NoSuchKey):
        alice.get_object(key)


def test_content_type_defaults_from_extension_and_header_wins(root_bucket):
    root_bucket.put_object("a/readme.txt", b"x")
    assert root_bucket.head_object("a/readme.txt").content_type == "text/plain"
    root_bucket.put_object("a/blob", b"x")
    assert root_bucket.head_object("a/blob").content_type == "application/octet-stream"
    root_bucket.put_object("a/data.bin", b"x", headers={"Content-Type": "application/x-custom"})
    assert root_bucket.head_object("a/data.bin").content_type == "application/x-custom"


def test_key_with_special_characters_round_trips(alice):
    key = "users/alice/dir with space/ü+%#?&=名字.txt"
    alice.put_object(key, b"special")
    assert alice.get_object(key).read() == b"special"
    listed = [o.key for o in alice.list_objects(prefix="users/alice/").object_list]
    assert listed == [key]


def test_ranges_and_response_overrides(alice):
    key = "users/alice/range.bin"
    data = bytes(range(256)) * 4
    alice.put_object(key, data)
    assert alice.get_object(key, byte_range=(10, 19)).read() == data[10:20]
    assert alice.get_object(key, byte_range=(1000, None)).read() == data[1000:]
    assert alice.get_object(key, byte_range=(None, 24)).read() == data[-24:]
    part = alice.get_object(key, byte_range=(5, 9))
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 5-9/{len(data)}"
    # OSS ignores an unsatisfiable range unless standard behaviour is asked for.
    assert alice.get_object(key, byte_range=(5000, 6000)).read() == data
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        alice.get_object(key, byte_range=(5000, 6000), headers={"x-oss-range-behavior": "standard"})
    assert (excinfo.value.status, excinfo.value.code) == (416, "InvalidRange")

    overridden = alice.get_object(
        key,
        params={
            "response-content-type": "text/csv",
            "response-content-disposition": 'attachment; filename="r.csv"',
            "response-cache-control": "no-cache",
        },
    )
    assert overridden.headers["Content-Type"] == "text/csv"
    assert overridden.headers["Content-Disposition"] == 'attachment; filename="r.csv"'
    assert overridden.headers["Cache-Control"] == "no-cache"


def test_conditional_get(root_bucket):
    root_bucket.put_object("c.txt", b"cond")
    etag = root_bucket.head_object("c.txt").etag
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        root_bucket.get_object("c.txt", headers={"If-Match": '"0000"'})
    with pytest.raises(oss2.exceptions.NotModified):
        root_bucket.get_object("c.txt", headers={"If-None-Match": f'"{etag}"'})
    assert root_bucket.get_object("c.txt", headers={"If-Match": f'"{etag}"'}).read() == b"cond"


def test_forbid_overwrite(alice):
    key = "users/alice/once.txt"
    alice.put_object(key, b"first", headers={"x-oss-forbid-overwrite": "true"})
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        alice.put_object(key, b"second", headers={"x-oss-forbid-overwrite": "true"})
    assert (excinfo.value.status, excinfo.value.code) == (409, "FileAlreadyExists")
    assert alice.get_object(key).read() == b"first"
    alice.put_object(key, b"third")
    assert alice.get_object(key).read() == b"third"


def test_content_md5_checked_when_sent(alice):
    key = "users/alice/md5.txt"
    good = base64.b64encode(_md5(b"payload").digest()).decode()
    assert alice.put_object(key, b"payload", headers={"Content-MD5": good}).status == 200
    wrong = base64.b64encode(_md5(b"other").digest()).decode()
    with pytest.raises(oss2.exceptions.InvalidDigest):
        alice.put_object("users/alice/md5-bad.txt", b"payload", headers={"Content-MD5": wrong})
    with pytest.raises(oss2.exceptions.InvalidDigest):
        alice.put_object("users/alice/md5-bad.txt", b"payload", headers={"Content-MD5": "zz"})
    assert alice.object_exists("users/alice/md5-bad.txt") is False


def test_chunked_upload_from_iterator(alice):
    chunks = [os.urandom(1000) for _ in range(5)]
    # oss2 sends an iterable without a length as Transfer-Encoding: chunked.
    result = alice.put_object("users/alice/chunked.bin", iter(chunks))
    assert result.crc == _crc64(b"".join(chunks))
    assert alice.get_object("users/alice/chunked.bin").read() == b"".join(chunks)


def test_batch_delete_quiet_and_verbose(alice):
    keys = [f"users/alice/batch/{i}.txt" for i in range(3)]
    for key in keys:
        alice.put_object(key, b"x")
    result = alice.batch_delete_objects([*keys[:2], "users/alice/batch/missing.txt"])
    assert sorted(result.deleted_keys) == sorted([*keys[:2], "users/alice/batch/missing.txt"])
    assert [o.key for o in alice.list_objects(prefix="users/alice/batch/").object_list] == [keys[2]]


def test_batch_delete_requires_content_md5(root_bucket, emu):
    body = b"<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>"
    request = oss2.http.Request(
        "POST",
        f"{emu.endpoint}/{BUCKET}/",
        data=body,
        params={"delete": ""},
        headers={"Content-Type": "application/xml"},
    )
    root_bucket.auth._sign_request(request, BUCKET, "")
    response = requests.post(
        f"{emu.endpoint}/{BUCKET}/?delete", data=body, headers=dict(request.headers), timeout=10
    )
    assert response.status_code == 400
    assert b"<Code>InvalidRequest</Code>" in response.content


def test_copy_object(alice, root_bucket):
    alice.put_object("users/alice/src.txt", b"copy me", headers={"x-oss-meta-a": "1"})
    result = alice.copy_object(BUCKET, "users/alice/src.txt", "users/alice/dst.txt")
    assert result.etag == md5_etag(b"copy me")
    copied = alice.get_object("users/alice/dst.txt")
    assert copied.read() == b"copy me"
    assert copied.headers["x-oss-meta-a"] == "1"
    replaced = alice.copy_object(
        BUCKET,
        "users/alice/src.txt",
        "users/alice/dst2.txt",
        headers={"x-oss-metadata-directive": "REPLACE", "x-oss-meta-b": "2"},
    )
    assert replaced.status == 200
    head = alice.head_object("users/alice/dst2.txt")
    assert head.headers.get("x-oss-meta-b") == "2"
    assert "x-oss-meta-a" not in head.headers
    with pytest.raises(oss2.exceptions.NoSuchKey):
        alice.copy_object(BUCKET, "users/alice/none.txt", "users/alice/dst3.txt")


def _keys(result) -> list[str]:
    return [o.key for o in result.object_list]


@pytest.fixture
def tree(root_bucket) -> list[str]:
    keys = [
        "users/alice/a.txt",
        "users/alice/b/1.txt",
        "users/alice/b/2.txt",
        "users/alice/c/1.txt",
        "users/alice/d.txt",
        "users/bob/x.txt",
    ]
    for key in keys:
        root_bucket.put_object(key, b"x")
    return keys


def test_list_objects_v1_delimiter_and_markers(alice, tree):
    page = alice.list_objects(prefix="users/alice/", delimiter="/", max_keys=2)
    assert _keys(page) == ["users/alice/a.txt"]
    assert page.prefix_list == ["users/alice/b/"]
    assert page.is_truncated is True
    assert page.next_marker == "users/alice/b/"
    page2 = alice.list_objects(
        prefix="users/alice/", delimiter="/", max_keys=2, marker=page.next_marker
    )
    assert page2.prefix_list == ["users/alice/c/"]
    assert _keys(page2) == ["users/alice/d.txt"]
    assert page2.is_truncated is False
    everything = [o.key for o in oss2.ObjectIterator(alice, prefix="users/alice/", max_keys=1)]
    assert everything == tree[:5]


def test_list_objects_v2_tokens_start_after_and_url_encoding(alice, tree):
    page = alice.list_objects_v2(prefix="users/alice/", max_keys=3)
    assert _keys(page) == tree[:3]
    assert page.is_truncated is True
    page2 = alice.list_objects_v2(
        prefix="users/alice/", max_keys=3, continuation_token=page.next_continuation_token
    )
    assert _keys(page2) == tree[3:5]
    assert page2.is_truncated is False
    after = alice.list_objects_v2(prefix="users/alice/", start_after="users/alice/b/2.txt")
    assert _keys(after) == tree[3:5]
    everything = [o.key for o in oss2.ObjectIteratorV2(alice, prefix="users/alice/", max_keys=2)]
    assert everything == tree[:5]
    # oss2 asks for encoding-type=url and decodes; a key with characters XML cannot carry survives.
    alice.put_object("users/alice/\x7fodd&<key>.txt", b"x")
    listed = _keys(alice.list_objects_v2(prefix="users/alice/\x7f", encoding_type="url"))
    assert listed == ["users/alice/\x7fodd&<key>.txt"]


def test_list_max_keys_validated(root_bucket):
    with pytest.raises(oss2.exceptions.InvalidArgument):
        root_bucket.list_objects(max_keys=1001)


def test_append_object(alice):
    key = "users/alice/log.txt"
    first = alice.append_object(key, 0, b"hello ")
    assert first.next_position == 6
    assert first.crc == _crc64(b"hello ")
    second = alice.append_object(key, 6, b"world", init_crc=first.crc)
    assert second.next_position == 11
    assert second.crc == _crc64(b"hello world")
    assert alice.get_object(key).read() == b"hello world"
    head = alice.head_object(key)
    assert head.object_type == "Appendable"
    assert head.headers["x-oss-next-append-position"] == "11"
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as excinfo:
        alice.append_object(key, 3, b"!")
    assert excinfo.value.next_position == 11
    alice.put_object("users/alice/normal.txt", b"n")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        alice.append_object("users/alice/normal.txt", 1, b"!")


def test_multipart_upload_list_parts_complete(alice):
    key = "users/alice/big.bin"
    parts_data = [os.urandom(100 * 1024), os.urandom(100 * 1024), os.urandom(1234)]
    upload_id = alice.init_multipart_upload(key, headers={"x-oss-meta-kind": "mp"}).upload_id
    assert upload_id
    uploaded = []
    for number, data in enumerate(parts_data, start=1):
        result = alice.upload_part(key, upload_id, number, data)
        assert result.etag == md5_etag(data)
        assert result.crc == _crc64(data)
        uploaded.append(oss2.models.PartInfo(number, result.etag))
    listed = alice.list_parts(key, upload_id, max_parts=2)
    assert [p.part_number for p in listed.parts] == [1, 2]
    assert listed.is_truncated is True
    rest = alice.list_parts(key, upload_id, marker=listed.next_marker)
    assert [(p.part_number, p.size) for p in rest.parts] == [(3, 1234)]
    uploads = alice.list_multipart_uploads(prefix="users/alice/")
    assert [(u.key, u.upload_id) for u in uploads.upload_list] == [(key, upload_id)]

    done = alice.complete_multipart_upload(key, upload_id, uploaded)
    whole = b"".join(parts_data)
    expected = _md5(b"".join(_md5(p).digest() for p in parts_data)).hexdigest()
    assert done.etag == f"{expected.upper()}-3"
    assert done.crc == _crc64(whole)
    got = alice.get_object(key)
    assert got.read() == whole
    assert got.headers["x-oss-meta-kind"] == "mp"
    assert alice.head_object(key).object_type == "Multipart"
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        alice.list_parts(key, upload_id)


def test_multipart_errors_and_abort(alice):
    key = "users/alice/mp.bin"
    upload_id = alice.init_multipart_upload(key).upload_id
    small = alice.upload_part(key, upload_id, 1, b"a" * 10)
    last = alice.upload_part(key, upload_id, 2, b"b" * 10)
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        alice.complete_multipart_upload(
            key,
            upload_id,
            [oss2.models.PartInfo(1, small.etag), oss2.models.PartInfo(2, last.etag)],
        )
    assert excinfo.value.code == "EntityTooSmall"
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        alice.complete_multipart_upload(key, upload_id, [oss2.models.PartInfo(1, "0" * 32)])
    assert excinfo.value.code == "InvalidPart"
    assert alice.abort_multipart_upload(key, upload_id).status == 204
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        alice.upload_part(key, upload_id, 3, b"c")
    assert alice.list_multipart_uploads(prefix="users/alice/").upload_list == []
    assert alice.object_exists(key) is False


def test_resumable_upload_crosses_the_multipart_threshold(alice, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    source = tmp_path / "video.mp4"
    source.write_bytes(data)
    store = oss2.ResumableStore(root=str(tmp_path / "store"))
    result = oss2.resumable_upload(
        alice,
        "users/alice/video.mp4",
        str(source),
        store=store,
        multipart_threshold=1024 * 1024,
        part_size=1024 * 1024,
        num_threads=2,
    )
    assert result.status == 200
    assert result.etag.endswith("-4")
    assert alice.head_object("users/alice/video.mp4").object_type == "Multipart"
    target = tmp_path / "back.mp4"
    oss2.resumable_download(
        alice,
        "users/alice/video.mp4",
        str(target),
        multiget_threshold=1024 * 1024,
        part_size=1024 * 1024,
        store=oss2.ResumableDownloadStore(root=str(tmp_path / "dstore")),
    )
    assert target.read_bytes() == data


def test_object_bigger_than_one_read_streams_with_crc(alice):
    data = os.urandom(5 * 1024 * 1024 + 3)
    bucket_with_crc = alice  # oss2 Bucket has enable_crc=True by default
    result = bucket_with_crc.put_object("users/alice/large.bin", io.BytesIO(data))
    assert result.crc == _crc64(data)
    assert bucket_with_crc.get_object("users/alice/large.bin").read() == data


def test_wrong_crc_would_be_caught_by_oss2(alice, emu):
    """oss2 raises InconsistentError on a wrong x-oss-hash-crc64ecma: the value must be exact."""
    alice.put_object("users/alice/crc.txt", b"abc")
    got = alice.get_object("users/alice/crc.txt")
    assert got.read() == b"abc"
    assert got.client_crc == got.server_crc == _crc64(b"abc")


def test_presigned_urls_v1_and_v4(alice, auth_version):
    alice.put_object("users/alice/shared.txt", b"shared")
    url = alice.sign_url("GET", "users/alice/shared.txt", 60)
    if auth_version == "v4":
        assert "x-oss-signature-version=OSS4-HMAC-SHA256" in url
    else:
        assert "OSSAccessKeyId=" in url
    assert "security-token" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"shared"
    put_url = alice.sign_url("PUT", "users/alice/via-url.txt", 60)
    assert requests.put(put_url, data=b"uploaded", timeout=10).status_code == 200
    assert alice.get_object("users/alice/via-url.txt").read() == b"uploaded"


def test_presigned_url_expires(alice, emu):
    alice.put_object("users/alice/shared.txt", b"shared")
    url = alice.sign_url("GET", "users/alice/shared.txt", 60)
    emu.clock.advance(120)
    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert b"Request has expired." in response.content
    assert response.headers["x-oss-request-id"]


def test_oss2_presigned_url_with_root_keys(root_bucket, emu):
    root_bucket.put_object("root.txt", b"root")
    v4 = oss2.Bucket(
        oss2.AuthV4(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET),
        emu.endpoint,
        BUCKET,
        region=REGION,
    )
    for bucket in (root_bucket, v4):
        assert requests.get(bucket.sign_url("GET", "root.txt", 30), timeout=10).content == b"root"


def test_bucket_create_info_location_and_list_buckets(emu, root_bucket):
    auth = oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET)
    fresh = oss2.Bucket(auth, emu.endpoint, "second-bucket")
    assert fresh.create_bucket().status == 200
    with pytest.raises(oss2.exceptions.ServerError) as excinfo:
        fresh.create_bucket()
    assert (excinfo.value.status, excinfo.value.code) == (409, "BucketAlreadyExists")
    info = fresh.get_bucket_info()
    assert info.name == "second-bucket"
    assert info.location == f"oss-{REGION}"
    assert info.acl.grant == "private"
    assert fresh.get_bucket_location().location == f"oss-{REGION}"
    names = [b.name for b in oss2.Service(auth, emu.endpoint).list_buckets().buckets]
    assert names == [BUCKET, "second-bucket"]
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        oss2.Bucket(auth, emu.endpoint, "no-such-bucket").get_object("x")
    fresh.put_object("x.txt", b"x")
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        fresh.delete_bucket()
    fresh.delete_object("x.txt")
    upload_id = fresh.init_multipart_upload("m.bin").upload_id
    with pytest.raises(oss2.exceptions.BucketNotEmpty):
        fresh.delete_bucket()
    fresh.abort_multipart_upload("m.bin", upload_id)
    assert fresh.delete_bucket().status == 204
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        fresh.get_bucket_info()


def test_virtual_host_addressing(emu):
    """With a host name, oss2 addresses `<bucket>.<host>`; `<bucket>.localhost` reaches loopback."""
    endpoint = f"http://localhost:{emu.port}"
    bucket = oss2.Bucket(
        oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET), endpoint, BUCKET
    )
    # oss2 treats "localhost" as path style; build the virtual-host request by hand.
    signed = oss2.http.Request("PUT", f"http://{BUCKET}.localhost:{emu.port}/vh.txt", data=b"vh")
    bucket.auth._sign_request(signed, BUCKET, "vh.txt")
    response = requests.put(
        f"http://127.0.0.1:{emu.port}/vh.txt",
        data=b"vh",
        headers={**signed.headers, "Host": f"{BUCKET}.localhost:{emu.port}"},
        timeout=10,
    )
    assert response.status_code == 200, response.content
    assert bucket.get_object("vh.txt").read() == b"vh"


def test_cors_for_browser_clients(emu, root_bucket):
    """Browsers (ali-oss on a page of the app server) preflight and must be able to read ETag."""
    origin = "http://127.0.0.1:8000"
    preflight = requests.options(
        f"{emu.endpoint}/{BUCKET}/users%2Falice%2Fa.txt",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization,x-oss-date,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == (
        "authorization,x-oss-date,content-type"
    )
    root_bucket.put_object("cors.txt", b"x")
    response = requests.get(
        root_bucket.sign_url("GET", "cors.txt", 60), headers={"Origin": origin}, timeout=10
    )
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("page", [1, 2, 7, 100])
def test_listing_pages_match_a_reference_walk(root_bucket, page):
    keys = sorted(
        [f"a/{i}/{j}.txt" for i in range(4) for j in range(3)]
        + [f"a/{i}.txt" for i in range(5)]
        + ["a/", "a//x", "ab", "b/1", "a/\u00e9/z"]
    )
    for key in keys:
        root_bucket.put_object(key, b"x")

    def reference(prefix: str, delimiter: str) -> list[str]:
        seen: list[str] = []
        for key in keys:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if common not in seen:
                    seen.append(common)
            else:
                seen.append(key)
        return seen

    for prefix, delimiter in [("", ""), ("a/", "/"), ("", "/"), ("a/1", "/"), ("a/", "")]:
        walked_v1 = []
        for info in oss2.ObjectIterator(
            root_bucket, prefix=prefix, delimiter=delimiter, max_keys=page
        ):
            walked_v1.append(info.key)
        walked_v2 = [
            info.key
            for info in oss2.ObjectIteratorV2(
                root_bucket, prefix=prefix, delimiter=delimiter, max_keys=page
            )
        ]
        assert walked_v1 == reference(prefix, delimiter), (prefix, delimiter)
        assert walked_v2 == reference(prefix, delimiter), (prefix, delimiter)


def test_complete_all_parts_without_a_list(alice):
    key = "users/alice/all.bin"
    upload_id = alice.init_multipart_upload(key).upload_id
    alice.upload_part(key, upload_id, 2, b"b" * 10)
    alice.upload_part(key, upload_id, 1, b"a" * (100 * 1024))
    result = alice.complete_multipart_upload(
        key, upload_id, None, headers={"x-oss-complete-all": "yes"}
    )
    assert result.etag.endswith("-2")
    assert alice.get_object(key).read() == b"a" * (100 * 1024) + b"b" * 10
