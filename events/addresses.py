"""Where webhooks may go: only an endpoint's configured URL, and only to an address that is not
a cloud metadata service or link-local (ever), nor loopback or private (unless
EVENTS_ALLOW_PRIVATE_ADDRESSES), and only to hosts in EVENTS_ALLOWED_HOSTS when that is set.
Checked when an endpoint is saved and again by the worker (once per endpoint and delivery
round), on the address then connected to (events/transport.py connects to the address checked
here: no second lookup a rebinding DNS server could answer differently)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

# Always refused: link-local (169.254.169.254 is AWS/GCP/Azure metadata), Alibaba Cloud's
# metadata service, AWS's IPv6 one.
_NEVER = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128")
)


class AddressRefused(Exception):
    """The URL or the address it resolves to may not be contacted."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL (Host header, TLS server name)
    port: int
    address: str  # the checked IP to connect to
    path: str  # path and query


def address_refusal(address: str) -> str | None:
    """Why `address` may not be contacted, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _NEVER if net.version == ip.version):
        return f"{ip} is link-local or a metadata service"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if (ip.is_loopback or ip.is_private or not ip.is_global) and not (
        settings.EVENTS_ALLOW_PRIVATE_ADDRESSES
    ):
        return f"{ip} is private (set EVENTS_ALLOW_PRIVATE_ADDRESSES to allow it)"
    return None


def url_refusal(url: str) -> str | None:
    """Why `url` may not be an endpoint, without resolving it, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "Only http and https URLs are allowed."
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "The URL may not carry credentials."
    try:
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError:
        return "The URL's port is not valid."
    allowed = [h.lower() for h in settings.EVENTS_ALLOWED_HOSTS]
    if allowed and parts.hostname.lower() not in allowed:
        return f"{parts.hostname} is not in EVENTS_ALLOWED_HOSTS."
    return None


def target_resolve(url: str) -> Target:
    """The URL's host resolved and every address checked; the first is the one to use."""
    refusal = url_refusal(url)
    if refusal:
        raise AddressRefused(refusal)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressRefused(f"{parts.hostname} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    # Every address, not only the first: a name that also resolves to a metadata address is
    # refused whichever one the resolver hands out first next time.
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise AddressRefused(f"{parts.hostname}: {refusal}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, addresses[0], path)
