"""The SSRF guard's classification, exercised on address objects only: nothing here opens a connection."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import pytest

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard, canonical, embedded_ipv4, refusal_reason

LOCAL_ONLY = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "not globally routable"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("198.18.0.1", "private"),
        ("192.0.2.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "tunnels to a private address"),
        ("2002:a9fe:a9fe::1", "tunnels to a link-local address"),
        ("64:ff9b::a9fe:a9fe", "NAT64 to a link-local address"),
        ("64:ff9b::7f00:1", "NAT64 to a loopback address"),
        ("::a00:1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_the_allowlist_wins_including_for_mapped_addresses() -> None:
    assert refusal_reason(ipaddress.ip_address("127.0.0.1"), LOCAL_ONLY) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL_ONLY) is None
    assert refusal_reason(ipaddress.ip_address("127.0.0.2"), LOCAL_ONLY) == "loopback"
    assert refusal_reason(ipaddress.ip_address("::1"), LOCAL_ONLY) == "loopback"
    private = [ipaddress.ip_network("10.0.0.0/8")]
    assert refusal_reason(ipaddress.ip_address("10.9.8.7"), private) is None
    assert refusal_reason(ipaddress.ip_address("64:ff9b::a09:807"), private) is None


def test_canonical_and_embedded_forms() -> None:
    assert canonical(ipaddress.ip_address("::ffff:127.0.0.2")) == ipaddress.ip_address("127.0.0.2")
    assert canonical(ipaddress.ip_address("2001:db8::1")) == ipaddress.ip_address("2001:db8::1")
    assert embedded_ipv4(ipaddress.ip_address("2002:a00:1::")) == ipaddress.ip_address("10.0.0.1")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address("169.254.169.254")
    assert embedded_ipv4(ipaddress.ip_address("8.8.8.8")) is None


@pytest.mark.parametrize(
    "spelling", ["127.0.0.2", "0x7f000002", "2130706434", "127.2", "0177.0.0.2", "0x7f.0.0.2", "::ffff:127.0.0.2"]
)
def test_attacker_spellings_resolve_to_the_real_address(spelling: str) -> None:
    """Numeric spellings are resolved locally (AI_NUMERICHOST), so this needs no DNS and connects nowhere."""
    with pytest.raises(ModerationFailed) as caught:
        AddressGuard(LOCAL_ONLY).resolve(spelling, 80)
    assert caught.value.code == ErrorCode.FETCH_ADDRESS_REFUSED
    wide = AddressGuard([ipaddress.ip_network("127.0.0.0/8")])
    assert [canonical(a) for a in wide.resolve(spelling, 80)] == [ipaddress.ip_address("127.0.0.2")]


def test_refusal_messages_name_the_host_not_the_address() -> None:
    with pytest.raises(ModerationFailed) as caught:
        AddressGuard().resolve("2130706433", 443)
    assert "'2130706433'" in caught.value.message and "127.0.0.1" not in caught.value.message


@pytest.mark.parametrize("host", ["no-such-host.invalid", "a" * 300, "bad\x00host"])
def test_unresolvable_names_fail_as_dns_errors(host: str) -> None:
    with pytest.raises(ModerationFailed) as caught:
        AddressGuard().resolve(host, 443, timeout_s=10)
    assert caught.value.code == ErrorCode.FETCH_DNS_FAILED


def test_a_slow_resolver_is_bounded_by_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def slow(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test" and not kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            time.sleep(2)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    started = time.monotonic()
    with pytest.raises(ModerationFailed) as caught:
        AddressGuard().resolve("slow.test", 443, timeout_s=0.3)
    assert caught.value.code == ErrorCode.FETCH_TIMEOUT
    assert time.monotonic() - started < 1.5


def test_any_refused_address_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with one public and one private record is refused: the connection could land on either."""
    real = socket.getaddrinfo

    def mixed(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(ModerationFailed) as caught:
        AddressGuard().resolve("mixed.test", 443, timeout_s=5)
    assert caught.value.code == ErrorCode.FETCH_ADDRESS_REFUSED
    assert AddressGuard([ipaddress.ip_network("10.0.0.0/8")]).resolve("mixed.test", 443, timeout_s=5) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("10.0.0.7"),
    ]
