"""A local OpenID Connect provider for the tests: its own RSA and EC keys, a discovery document
and a JWKS served over real HTTP (tests.helpers.LocalServer), key rotation, and an outage switch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.helpers import LocalServer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, kind: str) -> None:
        self.kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "rsa":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update({"kid": self.kid, "use": "sig", "alg": self.alg})

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class OidcProvider:
    """Serves /.well-known/openid-configuration and /jwks; issues ID tokens."""

    def __init__(self) -> None:
        self.keys = [SigningKey("rsa"), SigningKey("ec")]
        self.down = False
        self.jwks_requests = 0
        self.lock = threading.Lock()
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if provider.down:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks"}
                elif self.path == "/jwks":
                    with provider.lock:
                        provider.jwks_requests += 1
                    body = {"keys": [key.jwk for key in provider.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = LocalServer(Handler)
        self.issuer = self.server.url

    def close(self) -> None:
        self.server.close()

    def rotate(self) -> SigningKey:
        """A new RSA key replaces the old one in the JWKS (as Google does every few days)."""
        new = SigningKey("rsa")
        self.keys = [new, *self.keys[1:]]
        return new

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "subject-1",
            "aud": "app-client",
            "iat": now,
            "exp": now + 600,
            "email": "someone@example.com",
            "email_verified": True,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, key: SigningKey | None = None, kid: str | None = None, **claims) -> str:
        key = key or self.keys[0]
        return jwt.encode(
            self.claims(**claims),
            key.private,
            algorithm=key.alg,
            headers={"kid": kid or key.kid},
        )

    def unsigned_token(self, **claims) -> str:
        header = {"alg": "none", "kid": self.keys[0].kid, "typ": "JWT"}
        return self._signing_input(header, claims) + "."

    def _signing_input(self, header: dict, claims: dict) -> str:
        payload = json.dumps(self.claims(**claims)).encode()
        return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"

    def hs256_with_public_key(self, **claims) -> str:
        """The classic forgery: HMAC "signed" with the provider's public key as the secret."""
        key = self.keys[0]
        header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
        signing_input = self._signing_input(header, claims)
        signature = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"
