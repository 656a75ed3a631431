"""Upload URLs and PostObject forms (uploads.signing), signed with a user's own STS
credentials so that OSS itself confines them to the user's prefix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import oss2
from django.conf import settings

from uploads.oss.client import StorageUnavailable, _describe

V4_ALGORITHM = "OSS4-HMAC-SHA256"


@dataclass(frozen=True)
class Signer:
    """Credentials that sign an upload on a user's behalf: that user's STS credentials, so OSS
    itself confines what is signed to the user's prefix."""

    access_key_id: str
    access_key_secret: str
    security_token: str

    def __repr__(self) -> str:  # never print the secret or the token by accident
        return f"Signer(access_key_id={self.access_key_id!r})"


def _signing_bucket(signer: Signer) -> oss2.Bucket:
    auth_version = "v4" if settings.OSS_SIGNATURE_VERSION == "v4" else "v1"
    auth = oss2.StsAuth(
        signer.access_key_id, signer.access_key_secret, signer.security_token, auth_version
    )
    return oss2.Bucket(
        auth,
        settings.OSS_PUBLIC_ENDPOINT,
        settings.OSS_BUCKET,
        region=settings.OSS_REGION,
        is_path_style=settings.OSS_PATH_STYLE,
    )


def oss_presign_put(*, signer: Signer, key: str, headers: dict[str, str], expires_in: int) -> str:
    """A PUT URL for `key` on the public endpoint whose signature covers `headers`: V1 presigned
    URLs sign Content-Type, Content-MD5 and every x-oss-* header the request carries, V4 ones
    the same (plus any additional headers it lists), so OSS refuses the upload if one of them is
    missing, added or changed."""
    try:
        return _signing_bucket(signer).sign_url(
            "PUT", key, expires_in, headers=dict(headers), slash_safe=True
        )
    except (oss2.exceptions.OssError, oss2.exceptions.ClientError, ValueError) as exc:
        raise StorageUnavailable(f"Could not sign an upload URL: {_describe(exc)}") from exc


def oss_bucket_url() -> str:
    """Where forms are posted (PostObject): the bucket on the public endpoint, addressed the way
    the SDKs address it (path style for an IP or localhost, else `<bucket>.<host>`)."""
    client = oss2.Bucket(
        oss2.AnonymousAuth(),
        settings.OSS_PUBLIC_ENDPOINT,
        settings.OSS_BUCKET,
        is_path_style=settings.OSS_PATH_STYLE,
    )
    return client._make_url(settings.OSS_BUCKET, "")


def oss_post_signer_fields(*, signer: Signer, now: datetime) -> dict[str, str]:
    """The form fields that name the signer. The policy must fix each of them too: OSS requires
    it of the V4 fields, and a fixed token stops a form from being replayed with another."""
    fields = {"x-oss-security-token": signer.security_token} if signer.security_token else {}
    if settings.OSS_SIGNATURE_VERSION != "v4":
        return {"OSSAccessKeyId": signer.access_key_id, **fields}
    date_time = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{date_time[:8]}/{settings.OSS_REGION}/oss/aliyun_v4_request"
    return {
        "x-oss-signature-version": V4_ALGORITHM,
        "x-oss-credential": f"{signer.access_key_id}/{scope}",
        "x-oss-date": date_time,
        **fields,
    }


def oss_sign_post_policy(
    *, signer: Signer, policy: dict, signer_fields: dict[str, str]
) -> dict[str, str]:
    """The `policy` field (base64 JSON) and its signature field for a PostObject form.

    V1: base64(HMAC-SHA1(secret, policy)) in `Signature`. V4: hex HMAC-SHA256 of the policy with
    the day's signing key (the HMAC chain of date, region, "oss", "aliyun_v4_request" from
    "aliyun_v4" + secret) in `x-oss-signature`. oss2 has no PostObject signer."""
    encoded = base64.b64encode(json.dumps(policy, separators=(",", ":")).encode()).decode()
    if "x-oss-credential" not in signer_fields:
        digest = hmac.new(signer.access_key_secret.encode(), encoded.encode(), hashlib.sha1)
        return {"policy": encoded, "Signature": base64.b64encode(digest.digest()).decode()}
    date, region = signer_fields["x-oss-credential"].split("/")[1:3]
    key = _v4_signing_key(signer.access_key_secret, date, region)
    signature = hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest()
    return {"policy": encoded, "x-oss-signature": signature}


@lru_cache(maxsize=8)
def _v4_signing_key(secret: str, date: str, region: str) -> bytes:
    key = hmac.new(f"aliyun_v4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
