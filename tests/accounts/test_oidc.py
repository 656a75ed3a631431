"""POST /api/auth/oidc/ and linking, driven by a local OpenID provider over real HTTP."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from accounts.models import ExternalIdentity, User
from tests.accounts.oidc_provider import OidcProvider, SigningKey
from tests.factories import UserFactory
from tests.helpers import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(settings):
    provider = OidcProvider()
    # Discovery for one, a configured jwks_uri for the other: both ways of finding the keys.
    settings.OIDC_PROVIDERS = [
        {"name": "local", "issuer": provider.issuer, "audiences": ["app-client", "web-client"]},
        {
            "name": "direct",
            "issuer": provider.issuer,
            "audiences": ["app-client"],
            "jwks_uri": provider.issuer + "/jwks",
        },
    ]
    settings.OIDC_JWKS_MIN_REFRESH_SECONDS = 60
    yield provider
    provider.close()


def exchange(token: str, *, provider: str = "local", client: APIClient | None = None, **extra):
    body = {"provider": provider, "id_token": token, **extra}
    return (client or APIClient()).post("/api/auth/oidc/", body, format="json")


def assert_refused(response, code: str = "invalid_id_token") -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code
    assert ExternalIdentity.objects.count() == 0


def test_first_sign_in_creates_one_user_and_the_next_finds_it(idp):
    first = exchange(idp.token(sub="apple-000123.abc"))
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["created"] is True
    user = User.objects.get()
    assert body["user"]["public_id"] == user.public_id
    # The prefix is the server's public id: nothing the provider asserted is in it.
    assert body["user"]["storage_prefix"] == f"users/{user.public_id}/"
    assert "apple" not in user.username and "someone" not in user.username
    assert not user.has_usable_password()
    identity = ExternalIdentity.objects.get()
    assert (identity.user, identity.provider, identity.subject) == (
        user,
        "local",
        "apple-000123.abc",
    )
    assert identity.email == "someone@example.com"

    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.get("/api/auth/me/").json()["public_id"] == user.public_id

    again = exchange(idp.token(sub="apple-000123.abc"))
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["user"]["public_id"] == user.public_id
    assert User.objects.count() == 1


def test_ec_keys_and_a_configured_jwks_uri(idp):
    response = exchange(idp.token(key=idp.keys[1], sub="ec-user"), provider="direct")
    assert response.status_code == 200, response.content
    assert ExternalIdentity.objects.get().provider == "direct"


def test_unverified_email_is_not_kept(idp):
    assert exchange(idp.token(email_verified=False)).status_code == 200
    assert ExternalIdentity.objects.get().email == ""


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"iss": "https://accounts.example.com"}, "invalid_id_token"),
        ({"aud": "someone-elses-client"}, "invalid_id_token"),
        ({"exp": int(time.time()) - 3600}, "id_token_expired"),
        ({"nbf": int(time.time()) + 3600}, "invalid_id_token"),
        ({"iat": int(time.time()) + 3600}, "invalid_id_token"),
        ({"iat": None}, "invalid_id_token"),
        ({"sub": None}, "invalid_id_token"),
        ({"aud": ["app-client", "web-client"], "azp": "other"}, "invalid_id_token"),
    ],
    ids=["issuer", "audience", "expired", "nbf", "iat-future", "no-iat", "no-sub", "azp"],
)
def test_claims_that_are_refused(idp, claims, code):
    assert_refused(exchange(idp.token(**claims)), code)


def test_signature_by_another_key_under_a_published_kid(idp):
    impostor = SigningKey("rsa")
    assert_refused(exchange(idp.token(key=impostor, kid=idp.keys[0].kid)))


def test_tampered_payload(idp):
    header, _, signature = idp.token().split(".")
    _, payload, _ = idp.token(sub="someone-else").split(".")
    assert_refused(exchange(f"{header}.{payload}.{signature}"))


def test_alg_none_is_refused(idp):
    assert_refused(exchange(idp.unsigned_token()), "algorithm_not_allowed")


def test_hs256_with_the_public_key_as_secret_is_refused(idp):
    assert_refused(exchange(idp.hs256_with_public_key()), "algorithm_not_allowed")


def test_an_ec_key_cannot_verify_an_rs256_header(idp):
    # The EC key's kid on an RS256 token signed by the RSA key.
    assert_refused(exchange(idp.token(kid=idp.keys[1].kid)))


def test_algorithms_outside_the_allowed_list(idp, settings):
    settings.OIDC_ALLOWED_ALGORITHMS = ["ES256", "HS256", "none"]
    assert_refused(exchange(idp.token()), "algorithm_not_allowed")  # RS256 now
    assert_refused(exchange(idp.hs256_with_public_key()), "algorithm_not_allowed")
    assert exchange(idp.token(key=idp.keys[1])).status_code == 200


def test_nonce_when_given(idp):
    assert_refused(exchange(idp.token(nonce="n-1"), nonce="n-2"), "nonce_mismatch")
    assert_refused(exchange(idp.token(), nonce="n-1"), "nonce_mismatch")
    assert exchange(idp.token(nonce="n-1"), nonce="n-1").status_code == 200


def test_garbage_and_unknown_provider(idp):
    assert_refused(exchange("not-a-jwt"))
    response = exchange(idp.token(), provider="nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_provider"
    response = APIClient().post("/api/auth/oidc/", {"provider": "local"}, format="json")
    assert response.status_code == 400
    assert "id_token" in response.json()["error"]["fields"]


def test_key_rotation_refreshes_the_jwks_at_most_once_per_interval(idp):
    assert exchange(idp.token(sub="a")).status_code == 200
    assert idp.jwks_requests == 1
    assert exchange(idp.token(sub="a")).status_code == 200
    assert idp.jwks_requests == 1  # cached (shared cache, every worker reads it)

    new = idp.rotate()
    response = exchange(idp.token(key=new, sub="a"))
    assert response.status_code == 200, response.content
    assert idp.jwks_requests == 2  # the unknown kid made one refresh

    # Junk kids within the interval do not reach the provider again.
    for n in range(3):
        assert_refused_kid = exchange(idp.token(kid=f"junk-{n}", sub="a"))
        assert assert_refused_kid.status_code == 401
    assert idp.jwks_requests == 2
    # A second rotation within the interval is only seen once the interval has passed.
    newer = idp.rotate()
    assert exchange(idp.token(key=newer, sub="a")).status_code == 401
    assert idp.jwks_requests == 2


def test_provider_down_is_a_503_with_retry_after(idp):
    idp.down = True
    response = exchange(idp.token())
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "identity_provider_unavailable"

    idp.down = False
    assert exchange(idp.token()).status_code == 200


def test_provider_unreachable_is_a_503(settings):
    provider = OidcProvider()
    issuer = provider.issuer
    provider.close()
    settings.OIDC_PROVIDERS = [{"name": "gone", "issuer": issuer, "audiences": ["app-client"]}]
    response = exchange("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.c2ln", provider="gone")
    assert response.status_code == 503
    assert response["Retry-After"]


def test_oversized_and_mismatched_documents_are_503(idp, settings):
    settings.OIDC_MAX_DOCUMENT_BYTES = 100  # the JWKS is larger
    response = exchange(idp.token(), provider="direct")
    assert response.status_code == 503
    settings.OIDC_MAX_DOCUMENT_BYTES = 256 * 1024
    settings.OIDC_PROVIDERS = [
        {"name": "liar", "issuer": idp.issuer + "/other", "audiences": ["app-client"]}
    ]
    # A discovery document must name the issuer it is fetched for (here it names another).
    assert exchange(idp.token(), provider="liar").status_code == 503


def test_suspended_user_cannot_exchange(idp):
    assert exchange(idp.token()).status_code == 200
    User.objects.update(is_suspended=True)
    response = exchange(idp.token())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_suspended"


# --- Linking ------------------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=bearer(user)["Authorization"])
    return client


def link(client: APIClient, token: str, provider: str = "local"):
    return client.post(
        "/api/auth/oidc/link/", {"provider": provider, "id_token": token}, format="json"
    )


def test_link_then_sign_in_with_it(idp):
    user = UserFactory()
    client = client_for(user)
    response = link(client, idp.token(sub="g-1"))
    assert response.status_code == 201, response.content
    assert response.json()["provider"] == "local"
    assert link(client, idp.token(sub="g-1")).status_code == 201  # idempotent for the owner
    signed_in = exchange(idp.token(sub="g-1"))
    assert signed_in.json()["user"]["public_id"] == user.public_id
    assert [i["provider"] for i in client.get("/api/auth/identities/").json()] == ["local"]


def test_an_identity_linked_elsewhere_is_a_409(idp):
    owner, other = UserFactory(), UserFactory()
    assert link(client_for(owner), idp.token(sub="g-1")).status_code == 201
    response = link(client_for(other), idp.token(sub="g-1"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "identity_linked"
    assert ExternalIdentity.objects.get().user == owner


def test_link_needs_a_valid_token_and_a_signed_in_user(idp):
    assert link(APIClient(), idp.token()).status_code == 401
    user = UserFactory()
    assert link(client_for(user), idp.token(aud="x")).status_code == 401
    assert ExternalIdentity.objects.count() == 0


def test_never_unlink_the_last_way_in(idp):
    body = exchange(idp.token(sub="only")).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    first = ExternalIdentity.objects.get()
    response = client.delete(f"/api/auth/identities/{first.pk}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_sign_in_method"

    assert link(client, idp.token(sub="second"), provider="direct").status_code == 201
    assert client.delete(f"/api/auth/identities/{first.pk}/").status_code == 204
    assert list(ExternalIdentity.objects.values_list("subject", flat=True)) == ["second"]


def test_a_user_with_a_password_can_unlink_everything(idp):
    user = UserFactory()
    client = client_for(user)
    identity_id = link(client, idp.token()).json()["id"]
    # Another user's identity is not reachable.
    other = client_for(UserFactory())
    assert other.delete(f"/api/auth/identities/{identity_id}/").status_code == 404
    assert client.delete(f"/api/auth/identities/{identity_id}/").status_code == 204
    assert ExternalIdentity.objects.count() == 0
