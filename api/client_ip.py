"""The caller's address for the webhook allow-list: the socket peer, or, when that peer is a
configured trusted proxy, the nearest address in ``X-Forwarded-For`` that is not one."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def _in(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str | None:
    if peer is None:
        return None
    if not forwarded_for or not _in(peer, trusted):
        return peer
    # Walk right to left: each trusted hop vouches for the address before it.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _in(hop, trusted):
            return hop
    return peer


def allowed(address: str | None, allow: Sequence[IPNetwork]) -> bool:
    """No allow-list admits everyone; otherwise the address must be in it."""
    if not allow:
        return True
    return address is not None and _in(address, allow)


def caller_key(address: str) -> str:
    """Who to count failures against: an IPv4 address as it is, an IPv6 one by its /64 (one
    host usually holds a whole /64, and could otherwise take a fresh address per attempt)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is that IPv4 host
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
