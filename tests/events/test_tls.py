"""https receivers: the certificate is verified against the URL's host (EVENTS_CA_BUNDLE names
an internal CA); a receiver that cannot prove itself gets nothing."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction

from events.delivery import deliveries_post, events_fan_out
from events.models import Delivery, EventType
from events.services import endpoint_create, event_record
from tests.events.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def _tls_for(address: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for `address`, and the certificate's
    PEM file (the "internal CA")."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp()
    cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def tls_receiver(settings):
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    settings.EVENTS_READ_TIMEOUT_SECONDS = 2
    context, ca = _tls_for("127.0.0.1")
    receiver = Receiver()
    receiver.start(tls=context)
    receiver.ca = ca
    yield receiver
    receiver.close()


def _deliver_one(receiver) -> Delivery:
    _, receiver.secret = endpoint_create(url=receiver.url)
    with transaction.atomic():
        event_record(type=EventType.USER_SUSPENDED, user_public_id="u", data={"reason": "x"})
    events_fan_out()
    deliveries_post()
    return Delivery.objects.get()


def test_an_https_receiver_with_a_trusted_certificate(tls_receiver, settings):
    settings.EVENTS_CA_BUNDLE = tls_receiver.ca
    assert tls_receiver.url.startswith("https://")
    delivery = _deliver_one(tls_receiver)
    assert delivery.state == Delivery.State.DELIVERED
    assert [r.signed for r in tls_receiver.received] == [True]


def test_an_https_receiver_that_cannot_prove_itself_gets_nothing(tls_receiver):
    delivery = _deliver_one(tls_receiver)  # the public CAs do not know its certificate
    assert delivery.state == Delivery.State.PENDING
    assert "SSL" in delivery.last_error or "certificate" in delivery.last_error
    assert tls_receiver.received == []
