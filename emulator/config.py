"""Configuration of the local Alibaba Cloud emulator.

The defaults here are what the app server's embedded (no environment set) settings point at, so
`make run` works with no Alibaba account. They are development placeholders, not secrets: the
emulator is never exposed beyond the developer's machine, and production settings have no default
for any credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9100
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_ACCOUNT_ID = "1000000000000001"
DEFAULT_ROOT_ACCESS_KEY_ID = "LTAIemulatorRootKey01"
DEFAULT_ROOT_ACCESS_KEY_SECRET = "emulator-root-secret-for-local-use-only"  # noqa: S105
DEFAULT_BUCKET = "app-uploads"
DEFAULT_ROLE_NAME = "app-uploader"
DEFAULT_ROLE_ARN = f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/{DEFAULT_ROLE_NAME}"
DEFAULT_MAX_SESSION_DURATION = 3600
# Where the emulator serves the public half of the RSA key that signs its upload callbacks.
# Bucket names cannot start with "_", so this path never collides with path-style OSS requests.
PUBLIC_KEY_PATH = "/_emulator/callback-public-key.pem"
# What the emulator has seen, as JSON (`{"assume_role_calls": n}`): a fleet of app servers in
# other processes is checked against it (scripts/fleet_stack.py). Nothing secret is in it.
STATS_PATH = "/_emulator/stats"


def default_role_policy(buckets: tuple[str, ...]) -> dict:
    """The role's own permission policy: everything on the emulator's buckets and nothing else.

    Session policies handed to apps narrow this further; the effective permission is the
    intersection of both, as in RAM.
    """
    resources: list[str] = []
    for bucket in buckets:
        resources += [f"acs:oss:*:*:{bucket}", f"acs:oss:*:*:{bucket}/*"]
    return {
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": ["oss:*"], "Resource": resources}],
    }


@dataclass(frozen=True)
class Role:
    arn: str
    policy: dict
    max_session_duration: int = DEFAULT_MAX_SESSION_DURATION
    # Account ids (or "*") whose root keys may assume the role: the role's trust policy.
    trusted_accounts: tuple[str, ...] = (DEFAULT_ACCOUNT_ID,)


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port
    # None: nothing outlives stop() (object bodies are spooled to a temporary directory, so even
    # a 1 GiB upload never sits in RAM); a path keeps buckets, objects and uploads across runs.
    data_dir: Path | None = None
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    root_access_key_id: str = DEFAULT_ROOT_ACCESS_KEY_ID
    root_access_key_secret: str = DEFAULT_ROOT_ACCESS_KEY_SECRET
    buckets: tuple[str, ...] = (DEFAULT_BUCKET,)
    roles: tuple[Role, ...] = field(default_factory=tuple)
    callback_timeout_seconds: float = 5.0
    # Image styles of every bucket (OSS keeps them per bucket): name -> "image/..." process,
    # used as x-oss-process=style/<name>.
    image_styles: dict[str, str] = field(default_factory=dict)

    def effective_roles(self) -> tuple[Role, ...]:
        if self.roles:
            return self.roles
        return (Role(arn=DEFAULT_ROLE_ARN, policy=default_role_policy(self.buckets)),)


def load_config_file(path: Path) -> dict:
    """Read a JSON config file whose keys mirror EmulatorConfig's fields (roles as objects)."""
    return json.loads(Path(path).read_text())
