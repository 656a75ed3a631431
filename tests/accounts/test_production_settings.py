"""Production mode: `manage.py check --deploy` is clean, and missing secrets stop the start."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from tests.processes import run_manage

PRODUCTION_ENV = {
    "APP_ENV": "production",
    "SECRET_KEY": "k3P9-vQz2_Lm8Rw4Xt6Yb1Nc5Hd7Jf0Gs2Ae4Uo6Ii8Pp0Qq9Zz7Vv5Bb3Nn1Mm_Xx",
    "ALLOWED_HOSTS": "api.example.com",
    "ALIBABA_ACCESS_KEY_ID": "LTAI5tProductionKeyId",
    "ALIBABA_ACCESS_KEY_SECRET": "production-secret-value-for-the-check",
    "STS_ENDPOINT": "https://sts.cn-hangzhou.aliyuncs.com",
    "STS_ROLE_ARN": "acs:ram::1234567890123456:role/app-uploader",
    "OSS_BUCKET": "example-app-uploads",
    "OSS_REGION": "cn-hangzhou",
    "OSS_ENDPOINT": "https://oss-cn-hangzhou.aliyuncs.com",
    "OSS_CALLBACK_URL": "https://api.example.com/api/oss/callback/",
    "CREDENTIALS_ENCRYPTION_KEY": Fernet.generate_key().decode(),
}


@pytest.fixture
def production_env() -> dict[str, str]:
    return {
        **PRODUCTION_ENV,
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appserver"
        ),
        "REDIS_URL": settings.REDIS_URL or "redis://127.0.0.1:6379/0",
    }


@pytest.mark.slow(3)
def test_check_deploy_passes_without_warnings(production_env):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "ALIBABA_ACCESS_KEY_SECRET",
        "STS_ROLE_ARN",
        "OSS_BUCKET",
    ],
)
def test_a_missing_secret_stops_the_start_and_names_it(production_env, missing):
    env = {k: v for k, v in production_env.items() if k != missing}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} is not set. APP_ENV=production needs it" in result.stderr


def test_a_malformed_encryption_key_is_a_check_error(production_env):
    env = {**production_env, "CREDENTIALS_ENCRYPTION_KEY": "not-a-fernet-key"}
    result = run_manage("check", "--deploy", env=env)
    assert result.returncode != 0
    assert "tokens.E001" in result.stderr
    assert "not-a-fernet-key" not in result.stderr
