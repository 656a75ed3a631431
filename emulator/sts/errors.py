"""The two ways STS says no: StsError answers an STS request (its JSON error body), and
CredentialError refuses the credentials of an OSS request."""

from __future__ import annotations


class CredentialError(Exception):
    """Credentials of an OSS request that OSS would refuse (all HTTP 403)."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class StsError(Exception):
    """An STS error response: HTTP status, `Code` and `Message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
