"""Which network addresses a user-supplied URL may reach: the SSRF guard for image URLs and callback URLs.

A URL is only as safe as every address its host resolves to, so the guard resolves the host itself (through
`getaddrinfo`, which also turns attacker spellings like `0x7f000001`, `2130706433` or `127.1` into the real
address) and refuses the whole host if any one address is not public. Callers must then connect to one of the
returned addresses, never resolve the name again: DNS can answer differently a second time (rebinding).

This module must never open a connection; it only resolves and classifies.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Sequence

from worker.errors import ErrorCode, ModerationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: the gateway forwards to the IPv4 address in the low 32 bits."""

_REFUSED_KINDS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
    ("is_site_local", "site-local"),
)


def canonical(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) reaches the IPv4 host, so judge it as that host."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 host a tunnelling IPv6 address (6to4, Teredo, NAT64) ends up at, if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    address = canonical(address)
    return any(address.version == net.version and address in net for net in networks)


def refusal_reason(address: IPAddress, allowed_networks: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` must not be contacted (e.g. "loopback"), or None if it may be.

    Pure: classifies, never connects. The allowlist wins over every rule so local tests and private
    deployments can opt in to specific networks; everything else must be globally routable.
    """
    address = canonical(address)
    if is_in_networks(address, allowed_networks):
        return None
    tunnelled = embedded_ipv4(address)
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64 and tunnelled is not None:
        inner = refusal_reason(tunnelled, allowed_networks)
        return None if inner is None else f"NAT64 to a {inner} address"
    for attribute, kind in _REFUSED_KINDS:
        if getattr(address, attribute, False):
            return kind
    if not address.is_global:
        return "not globally routable"
    if tunnelled is not None and (inner := refusal_reason(tunnelled)) is not None:
        return f"tunnels to a {inner} address"
    return None


class AddressGuard:
    """Resolves hosts and refuses any whose addresses are not public (unless explicitly allowed)."""

    def __init__(self, allowed_networks: Sequence[IPNetwork] = ()) -> None:
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(allowed_networks)

    def refusal_reason(self, address: IPAddress) -> str | None:
        return refusal_reason(address, self.allowed_networks)

    def is_allowed(self, address: IPAddress) -> bool:
        return self.refusal_reason(address) is None

    def check(self, host: str, address: IPAddress) -> None:
        """Raise FETCH_ADDRESS_REFUSED for a refused address (the message names the host, not the address)."""
        reason = self.refusal_reason(address)
        if reason is not None:
            raise ModerationFailed(
                ErrorCode.FETCH_ADDRESS_REFUSED, f"host {host!r} resolves to a {reason} address (refused)"
            )

    def resolve(self, host: str, port: int, *, timeout_s: float | None = None) -> list[IPAddress]:
        """Every address `host` resolves to, in the resolver's preferred order, after checking all of them.

        Raises FETCH_DNS_FAILED if the name does not resolve, FETCH_TIMEOUT if the resolver takes longer
        than `timeout_s`, FETCH_ADDRESS_REFUSED if any address is refused.
        """
        addresses = resolve_host(host, port, timeout_s=timeout_s)
        for address in addresses:
            self.check(host, address)
        return addresses


def resolve_host(host: str, port: int, *, timeout_s: float | None = None) -> list[IPAddress]:
    """Resolve with getaddrinfo (numeric spellings first, without touching DNS); deduplicated, order kept."""
    texts = _numeric_lookup(host, port)
    if texts is None:
        texts = _bounded_lookup(host, port, timeout_s)
    addresses: list[IPAddress] = []
    for text in texts:
        address = _parse_sockaddr_host(host, text)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ModerationFailed(ErrorCode.FETCH_DNS_FAILED, f"host {host!r} has no addresses")
    return addresses


def _getaddrinfo(host: str, port: int, flags: int = 0) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    except (UnicodeError, ValueError) as exc:  # over-long labels, NUL bytes: not a resolvable name
        message = f"host {host!r} is not a valid name: {exc}"
        raise ModerationFailed(ErrorCode.FETCH_DNS_FAILED, message) from exc
    return [str(info[4][0]) for info in infos]


def _numeric_lookup(host: str, port: int) -> list[str] | None:
    try:
        return _getaddrinfo(host, port, socket.AI_NUMERICHOST)
    except (socket.gaierror, ModerationFailed):
        return None


def _bounded_lookup(host: str, port: int, timeout_s: float | None) -> list[str]:
    """getaddrinfo has no timeout of its own, so a slow resolver is waited for in a daemon thread, bounded."""
    outcome: list[list[str] | BaseException] = []

    def lookup() -> None:
        try:
            outcome.append(_getaddrinfo(host, port))
        except (OSError, ModerationFailed) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name="intake-dns", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise ModerationFailed(ErrorCode.FETCH_TIMEOUT, f"resolving {host!r} took longer than {timeout_s}s")
    result = outcome[0]
    if isinstance(result, ModerationFailed):
        raise result
    if isinstance(result, BaseException):
        message = f"host {host!r} does not resolve: {result}"
        raise ModerationFailed(ErrorCode.FETCH_DNS_FAILED, message) from result
    return result


def _parse_sockaddr_host(host: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:  # an address the resolver returned but we cannot judge: refuse it
        raise ModerationFailed(
            ErrorCode.FETCH_ADDRESS_REFUSED, f"host {host!r} resolves to an unrecognised address"
        ) from exc
