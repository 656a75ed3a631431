"""Fixtures for the emulator's OSS tests: an in-process emulator per test and oss2 clients.

Pure Python (no database): every test talks to a fresh emulator on a free port over real HTTP
with the official SDKs, oss2 for OSS and aliyun-python-sdk-sts for AssumeRole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import oss2
import pytest
from aliyunsdkcore.client import AcsClient
from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

from emulator import Emulator, EmulatorConfig
from emulator.config import (
    DEFAULT_BUCKET,
    DEFAULT_REGION,
    DEFAULT_ROLE_ARN,
    DEFAULT_ROOT_ACCESS_KEY_ID,
    DEFAULT_ROOT_ACCESS_KEY_SECRET,
)

BUCKET = DEFAULT_BUCKET
REGION = DEFAULT_REGION


def user_policy(user: str, bucket: str = BUCKET) -> str:
    """The session policy the app server hands a user: their own folder, nothing else."""
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "oss:PutObject",
                        "oss:GetObject",
                        "oss:DeleteObject",
                        "oss:ListParts",
                        "oss:AbortMultipartUpload",
                    ],
                    "Resource": [f"acs:oss:*:*:{bucket}/users/{user}/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["oss:ListObjects", "oss:ListMultipartUploads"],
                    "Resource": [f"acs:oss:*:*:{bucket}"],
                    "Condition": {"StringLike": {"oss:Prefix": [f"users/{user}/*"]}},
                },
            ],
        }
    )


@dataclass(frozen=True)
class StsCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str


def assume_role(emu: Emulator, *, policy: str | None, session: str = "alice") -> StsCredentials:
    client = AcsClient(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET, REGION)
    request = AssumeRoleRequest()
    request.set_endpoint(emu.endpoint)
    request.set_RoleArn(DEFAULT_ROLE_ARN)
    request.set_RoleSessionName(session)
    request.set_DurationSeconds(900)
    if policy is not None:
        request.set_Policy(policy)
    body = json.loads(client.do_action_with_exception(request))
    creds = body["Credentials"]
    return StsCredentials(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"])


def sts_bucket(emu: Emulator, creds: StsCredentials, auth_version: str, **kwargs) -> oss2.Bucket:
    auth = oss2.StsAuth(
        creds.access_key_id,
        creds.access_key_secret,
        creds.security_token,
        auth_version=auth_version,
    )
    return oss2.Bucket(auth, emu.endpoint, BUCKET, region=REGION, **kwargs)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0, data_dir=None)) as emulator:
        yield emulator


@pytest.fixture
def root_bucket(emu: Emulator) -> oss2.Bucket:
    return oss2.Bucket(
        oss2.Auth(DEFAULT_ROOT_ACCESS_KEY_ID, DEFAULT_ROOT_ACCESS_KEY_SECRET), emu.endpoint, BUCKET
    )


@pytest.fixture(params=["v1", "v4"])
def auth_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def alice_creds(emu: Emulator) -> StsCredentials:
    return assume_role(emu, policy=user_policy("alice"), session="alice")


@pytest.fixture
def alice(emu: Emulator, alice_creds: StsCredentials, auth_version: str) -> oss2.Bucket:
    """oss2 with alice's STS credentials (scoped to users/alice/), over V1 and V4."""
    return sts_bucket(emu, alice_creds, auth_version)


@pytest.fixture
def make_bucket(emu: Emulator) -> Callable[..., oss2.Bucket]:
    def make(auth: object, **kwargs: object) -> oss2.Bucket:
        return oss2.Bucket(auth, emu.endpoint, BUCKET, region=REGION, **kwargs)

    return make
