"""The signed-in user (JWT pair, single-flight refresh) and the STS credentials provider."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import oss2
import requests

TIMEOUT = 15
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The SDKs fetch new STS credentials this long before `Expiration` (both hard-code 5 minutes).
CREDENTIALS_MARGIN = timedelta(minutes=5)


class ApiError(Exception):
    """A 4xx/5xx of the app server, with its machine-readable code and `Retry-After`."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        # The credentials endpoint keeps the STS sample's shape; every other one nests "error".
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = error.get("code") or body.get("ErrorCode") or "http_error"
        message = error.get("message") or body.get("ErrorMessage") or response.text[:300]
        retry_after = response.headers.get("Retry-After")
        return cls(response.status_code, code, message, int(retry_after) if retry_after else None)


class SessionExpired(ApiError):
    """The refresh token was refused: the user has to log in again."""


class AppSession:
    """One signed-in user. Thread-safe: uploads, listing and the credentials provider share it."""

    def __init__(self, *, base_url: str, access: str, refresh: str, username: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._http = requests.Session()
        self._access, self._refresh = access, refresh
        self._refresh_lock = threading.Lock()
        self.refreshes = 0  # how many refreshes this session sent (each rotates the pair)

    @classmethod
    def login(cls, *, base_url: str, username: str, password: str) -> AppSession:
        response = requests.post(
            f"{base_url.rstrip('/')}/api/auth/login/",
            json={"username": username, "password": password},
            timeout=TIMEOUT,
        )
        if response.status_code != 200:
            raise ApiError.from_response(response)
        pair = response.json()
        return cls(
            base_url=base_url, access=pair["access"], refresh=pair["refresh"], username=username
        )

    @property
    def access_token(self) -> str:
        return self._access

    @property
    def refresh_token(self) -> str:
        """What the app keeps in the Keystore / Keychain; it changes with every refresh."""
        return self._refresh

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The request with the current access token; on 401, one refresh and one retry."""
        kwargs.setdefault("timeout", TIMEOUT)
        if not self._refresh:
            raise SessionExpired(401, "logged_out", "This session was logged out.")
        for attempt in (1, 2):
            sent_with = self._access
            response = self._http.request(
                method,
                self.base_url + path,
                headers={"Authorization": f"Bearer {sent_with}"},
                **kwargs,
            )
            if response.status_code != 401 or attempt == 2:
                return response
            self.refresh(failed_access=sent_with)
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response.json() if response.content else {}

    def refresh(self, *, failed_access: str) -> None:
        """Single flight: whoever holds the lock refreshes; a caller whose token was already
        replaced meanwhile just retries with the new one instead of spending the refresh token
        a second time (the server would take that for a stolen token)."""
        with self._refresh_lock:
            if self._access != failed_access:
                return
            response = self._http.post(
                f"{self.base_url}/api/auth/refresh/",
                json={"refresh": self._refresh},
                timeout=TIMEOUT,
            )
            if response.status_code != 200:
                error = ApiError.from_response(response)
                raise SessionExpired(error.status, error.code, error.message, error.retry_after)
            pair = response.json()
            self._access, self._refresh = pair["access"], pair["refresh"]
            self.refreshes += 1

    def logout(self) -> None:
        """Blacklists the refresh token; the session is unusable afterwards."""
        self._http.post(
            f"{self.base_url}/api/auth/logout/", json={"refresh": self._refresh}, timeout=TIMEOUT
        )
        self._access = self._refresh = ""
        self.close()

    def close(self) -> None:
        """Drop the kept-alive connections (the tokens stay usable)."""
        self._http.close()


class AppCredentialsProvider(oss2.credentials.CredentialsProvider):
    """STS credentials for one session (the SDKs' OSSFederationCredentialProvider with a JWT).

    Raises `ApiError` with the server's code instead of returning nothing: 401 after a refresh
    (`SessionExpired`, log in again), 403 `account_suspended` (stop), 429/503 (wait
    `retry_after` seconds). A new user gets a new provider: this one holds its user's keys.
    """

    def __init__(self, session: AppSession, *, scope: str = "readwrite") -> None:
        self.session, self.scope = session, scope
        self._lock = threading.Lock()
        self._answer: dict | None = None
        self._expires_at: datetime | None = None
        self.fetches = 0

    def get_credentials(self) -> oss2.credentials.Credentials:
        answer = self.answer()
        return oss2.credentials.Credentials(
            answer["AccessKeyId"], answer["AccessKeySecret"], answer["SecurityToken"]
        )

    def answer(self) -> dict:
        """The current credentials answer, fetched when missing or close to `Expiration`."""
        with self._lock:
            now = datetime.now(UTC)
            if self._answer is None or now >= self._expires_at - CREDENTIALS_MARGIN:
                self._answer = self._fetch()
                self._expires_at = datetime.strptime(
                    self._answer["Expiration"], EXPIRATION_FORMAT
                ).replace(tzinfo=UTC)
            return self._answer

    def forget(self) -> None:
        """Drop the cached keys (log out, switch user)."""
        with self._lock:
            self._answer = self._expires_at = None

    def _fetch(self) -> dict:
        response = self.session.request(
            "GET", "/api/sts/credentials/", params={"scope": self.scope}
        )
        if response.status_code == 401:
            error = ApiError.from_response(response)
            raise SessionExpired(error.status, error.code, error.message)
        body = response.json() if response.content else {}
        if response.status_code != 200 or str(body.get("StatusCode")) != "200":
            raise ApiError.from_response(response)
        self.fetches += 1
        return body


def oss_bucket(
    provider: AppCredentialsProvider,
    *,
    endpoint: str,
    bucket: str,
    region: str,
    signature_version: str = "v4",
    path_style: bool = False,
) -> oss2.Bucket:
    auth = (
        oss2.ProviderAuthV4(provider) if signature_version == "v4" else oss2.ProviderAuth(provider)
    )
    return oss2.Bucket(
        auth,
        endpoint,
        bucket,
        region=region,
        # oss2 uses path style for IP addresses and localhost by itself; a host name such as a
        # docker-compose service name needs it said.
        is_path_style=path_style,
        connect_timeout=TIMEOUT,
    )


def bucket_for(
    provider: AppCredentialsProvider,
    ticket: dict,
    *,
    signature_version: str = "v4",
    path_style: bool = False,
) -> oss2.Bucket:
    return oss_bucket(
        provider,
        endpoint=ticket["endpoint"],
        bucket=ticket["bucket"],
        region=ticket["region"],
        signature_version=signature_version,
        path_style=path_style,
    )
