"""Verifying OpenID Connect ID tokens from the providers in OIDC_PROVIDERS (the only module that
fetches a provider's documents).

Assumes of each provider: an issuer URL whose discovery document
(``<issuer>/.well-known/openid-configuration``) names the same issuer and a ``jwks_uri`` (or a
configured ``jwks_uri``), ID tokens signed with an asymmetric key published in that JWKS, and a
``kid`` in every token header (Apple, Google, Keycloak, Auth0, Okta and Firebase all send one).

JOSE is PyJWT's: the signature, ``exp``, ``nbf``, ``iat``, ``iss`` and ``aud`` checks are its own.
This module chooses the key and the algorithms and fetches the documents: bounded in time and
size, cached in the shared cache (every worker of the fleet reads the same copy), and re-fetched
on an unknown ``kid`` at most once per OIDC_JWKS_MIN_REFRESH_SECONDS for the whole fleet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from django.conf import settings
from django.core.cache import cache

from appserver.errors import InvalidInput, NotAuthenticated, ServiceUnavailable

logger = logging.getLogger(__name__)

# Families each key type may sign with: an RSA key never verifies an ES* token and vice versa.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


class IdentityProviderUnavailable(ServiceUnavailable):
    code = "identity_provider_unavailable"
    message = "The identity provider's keys could not be fetched. Retry later."


class InvalidIdToken(NotAuthenticated):
    code, message = "invalid_id_token", "The ID token is not valid."


@dataclass(frozen=True)
class Provider:
    name: str
    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str


@dataclass(frozen=True)
class VerifiedIdentity:
    provider: str
    subject: str
    email: str
    email_verified: bool


def _allowed_algorithms() -> list[str]:
    # "none" and HS* are never allowed: an HS256 token "signed" with the provider's public key
    # as the secret is the classic forgery, and nobody but the provider holds its private key.
    return [alg for alg in settings.OIDC_ALLOWED_ALGORITHMS if alg[:2] in _KEY_TYPES]


def oidc_provider(*, name: str) -> Provider:
    for entry in settings.OIDC_PROVIDERS:
        if isinstance(entry, dict) and entry.get("name") == name:
            return Provider(
                name=name,
                issuer=str(entry["issuer"]),
                audiences=tuple(str(a) for a in entry.get("audiences") or ()),
                jwks_uri=str(entry.get("jwks_uri") or ""),
            )
    raise InvalidInput(
        "No identity provider of that name is configured.",
        code="unknown_provider",
        fields={"provider": ["Unknown provider."]},
    )


def _fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document, at most OIDC_MAX_DOCUMENT_BYTES and OIDC_HTTP_TIMEOUT_SECONDS."""
    limit = settings.OIDC_MAX_DOCUMENT_BYTES
    try:
        with requests.get(
            url,
            timeout=settings.OIDC_HTTP_TIMEOUT_SECONDS,
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/json"},
        ) as response:
            if response.status_code != 200:
                raise IdentityProviderUnavailable(
                    f"The identity provider answered {response.status_code} for its keys."
                )
            body = b""
            # requests' timeout bounds each read, not the whole body: a provider dripping bytes
            # must not hold a worker, so the total is bounded too.
            deadline = time.monotonic() + 2 * settings.OIDC_HTTP_TIMEOUT_SECONDS
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > limit:
                    raise IdentityProviderUnavailable(
                        "The identity provider's document is larger than allowed."
                    )
                if time.monotonic() > deadline:
                    raise IdentityProviderUnavailable("The identity provider answers too slowly.")
        document = json.loads(body)
    except requests.RequestException as exc:
        logger.warning("Fetching %s failed: %s", url, type(exc).__name__)
        raise IdentityProviderUnavailable() from exc
    except ValueError as exc:
        raise IdentityProviderUnavailable("The identity provider sent invalid JSON.") from exc
    if not isinstance(document, dict):
        raise IdentityProviderUnavailable("The identity provider sent an unexpected document.")
    return document


def _cache_key(kind: str, url: str) -> str:
    return f"oidc:{kind}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


def _jwks_uri(provider: Provider) -> str:
    if provider.jwks_uri:
        return provider.jwks_uri
    url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
    key = _cache_key("discovery", url)
    jwks_uri = cache.get(key)
    if jwks_uri is None:
        document = _fetch_json(url)
        # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for.
        if document.get("issuer") != provider.issuer or not isinstance(
            document.get("jwks_uri"), str
        ):
            raise IdentityProviderUnavailable(
                "The identity provider's discovery document does not match its issuer."
            )
        jwks_uri = document["jwks_uri"]
        cache.set(key, jwks_uri, settings.OIDC_JWKS_CACHE_SECONDS)
    return jwks_uri


def _jwks(uri: str, *, refresh: bool) -> dict[str, Any]:
    key = _cache_key("jwks", uri)
    document = None if refresh else cache.get(key)
    if document is None:
        document = _fetch_json(uri)
        if not isinstance(document.get("keys"), list):
            raise IdentityProviderUnavailable("The identity provider's JWKS has no keys.")
        cache.set(key, document, settings.OIDC_JWKS_CACHE_SECONDS)
    return document


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    alg: str  # the JWK's own "alg", "" when it names none


def _key_in(document: dict[str, Any], kid: str) -> _Key | None:
    for entry in document["keys"]:
        if isinstance(entry, dict) and entry.get("kid") == kid and entry.get("use", "sig") == "sig":
            try:
                return _Key(jwk=jwt.PyJWK(entry), alg=str(entry.get("alg") or ""))
            except jwt.PyJWTError:
                return None
    return None


def _signing_key(provider: Provider, kid: str) -> _Key:
    uri = _jwks_uri(provider)
    key = _key_in(_jwks(uri, refresh=False), kid)
    # An unknown kid is either a rotation we have not seen or junk. Re-fetch, but at most once
    # per interval for the whole fleet (cache.add is atomic): junk kids cannot hammer the IdP.
    if key is None and cache.add(
        _cache_key("jwks-refreshed", uri), 1, settings.OIDC_JWKS_MIN_REFRESH_SECONDS
    ):
        key = _key_in(_jwks(uri, refresh=True), kid)
    if key is None:
        raise InvalidIdToken("The ID token is signed with a key the provider does not publish.")
    return key


def oidc_verify(*, provider_name: str, id_token: str, nonce: str | None = None) -> VerifiedIdentity:
    """The identity an ID token proves, after every check OpenID Connect Core 3.1.3.7 asks."""
    provider = oidc_provider(name=provider_name)
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise InvalidIdToken("The ID token is not a JWT.") from exc
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in _allowed_algorithms():
        raise InvalidIdToken(
            "The ID token's algorithm is not allowed.", code="algorithm_not_allowed"
        )
    if not isinstance(kid, str) or not kid:
        raise InvalidIdToken("The ID token names no key (kid).")
    key = _signing_key(provider, kid)
    if key.jwk.key_type != _KEY_TYPES[alg[:2]] or (key.alg and key.alg != alg):
        raise InvalidIdToken("The ID token's algorithm does not match its key.")
    try:
        claims = jwt.decode(
            id_token,
            key=key.jwk.key,
            algorithms=[alg],
            audience=list(provider.audiences),
            issuer=provider.issuer,
            leeway=settings.OIDC_LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidIdToken("The ID token has expired.", code="id_token_expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidIdToken(f"The ID token is not valid: {exc}.") from exc
    # With several audiences, the authorized party must be one of ours (Core 3.1.3.7, 4-5).
    azp = claims.get("azp")
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if azp is not None and len(aud) > 1 and azp not in provider.audiences:
        raise InvalidIdToken("The ID token was issued to another client (azp).")
    if nonce is not None and not hmac.compare_digest(
        str(claims.get("nonce", "")).encode(), nonce.encode()
    ):
        raise InvalidIdToken("The ID token's nonce does not match.", code="nonce_mismatch")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidIdToken("The ID token's subject is not valid.")
    email = claims.get("email")
    verified = claims.get("email_verified") in (True, "true")  # Apple sends a string
    return VerifiedIdentity(
        provider=provider.name,
        subject=subject,
        email=email if isinstance(email, str) and len(email) <= 254 else "",
        email_verified=verified,
    )
