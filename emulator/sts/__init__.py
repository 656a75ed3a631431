"""STS AssumeRole, and the resolution of the credentials it issues on later OSS requests.

What this reproduces of Alibaba Cloud STS (wire facts: docs/alibaba-wire.md, STS AssumeRole):

- `AssumeRole` (Version 2015-04-01) over the two signing schemes the official Python SDKs use:
  the RPC scheme of aliyun-python-sdk-core and of alibabacloud-sts20150401 with
  `signature_algorithm='v2'` (parameters in the query and/or a form body; HMAC-SHA1 over
  `POST&%2F&` + the percent-encoded sorted parameters, key = secret + "&"), and ACS3-HMAC-SHA256,
  the default of alibabacloud-sts20150401 (canonical request over the method, path, sorted
  query, the headers named in `SignedHeaders`, and the SHA-256 of the body). Both are verified
  against the caller's secret; `Timestamp`/`x-acs-date` more than 15 minutes off the emulator's
  clock is refused, and a signature nonce is accepted once.
- Only the root key of the configured account may call AssumeRole, and only for a role whose
  trust policy (`Role.trusted_accounts`) names that account; STS credentials cannot chain.
- Parameter checks as STS makes them: `RoleArn` (format, then existence: 404
  `EntityNotExist.Role`), `RoleSessionName` (2-64 of `[A-Za-z0-9.@_-]`), `DurationSeconds`
  (900 up to the role's maximum, default 3600), `Policy` (grammar and 2048-character size via
  `policies.grammar.parse_policy`; an empty `Policy` counts as none).
- Errors are the real JSON shape `{"RequestId", "HostId", "Code", "Message"}` with the real HTTP
  status. `SignatureDoesNotMatch` is HTTP 400 and its message ends with
  "server string to sign is:<string>", because aliyun-python-sdk-core splits the message on ":"
  and, when the string equals its own, reports `InvalidAccessKeySecret` instead (as it does
  against the real STS).
- Issued credentials: `STS.`-prefixed AccessKeyId, a random AccessKeySecret, and a SecurityToken
  that is a sealed, self-contained blob (AES-256-GCM under a key derived from `sealing_key`)
  holding the key id, secret, role, session name, session policy and expiry. Nothing is kept in
  memory, so tokens stay valid across emulator restarts when the sealing key is persisted, and a
  token seen in a log or a presigned URL reveals neither the secret nor the policy. The role's
  own policy is looked up when the token is used, as RAM applies role policy changes at once.
- `resolve()` turns the AccessKeyId and `x-oss-security-token` of an OSS request into a
  `Principal`, with the OSS error codes: `InvalidAccessKeyId`, `InvalidSecurityToken`,
  `SecurityTokenExpired` (all HTTP 403).

Where: service.py answers AssumeRole (parameters, limits, test hooks); signing.py verifies the
request's signature, time and nonce; tokens.py seals the issued credentials into the security
token and resolves them on OSS requests; errors.py holds the two error types.
"""

from emulator.sts.errors import CredentialError
from emulator.sts.service import (
    API_VERSION,
    DEFAULT_DURATION_SECONDS,
    HOST_ID,
    MIN_DURATION_SECONDS,
    StsService,
)
from emulator.sts.signing import MAX_SKEW_SECONDS, acs3_canonical_request, rpc_string_to_sign
from emulator.sts.tokens import STS_KEY_PREFIX, Principal, format_expiration

__all__ = [
    "API_VERSION",
    "DEFAULT_DURATION_SECONDS",
    "HOST_ID",
    "MAX_SKEW_SECONDS",
    "MIN_DURATION_SECONDS",
    "STS_KEY_PREFIX",
    "CredentialError",
    "Principal",
    "StsService",
    "acs3_canonical_request",
    "format_expiration",
    "rpc_string_to_sign",
]
