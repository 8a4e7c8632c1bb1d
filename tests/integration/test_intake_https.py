"""Pinned https: the connection goes to the checked IP, while SNI and certificate checks use the real name.

A throwaway CA signs a certificate for a host name only (no IP address), so a fetch succeeds only if the
client sends that name as SNI and verifies the certificate against it, although it connects to an IP literal.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.test_intake_http import PNG, ImageServer, running
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard
from worker.intake.http_fetch import HttpFetcher

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")]
NAMED_HOST = "images.test"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, issuer: str, public_key: Any, signing_key: ec.EllipticCurvePrivateKey, *, ca: bool, names: list[str]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


class TestCA:
    __test__ = False

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _certificate("intake test CA", "intake test CA", self.key.public_key(), self.key, ca=True, names=[])

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cert.public_bytes(serialization.Encoding.PEM).decode())

    def server_context(self, tmp: Path, host_names: list[str], seen_sni: list[str | None]) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(host_names[0], "intake test CA", key.public_key(), self.key, ca=False, names=host_names)
        cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        def record_sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
            seen_sni.append(name)

        context.sni_callback = record_sni
        return context


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@contextlib.contextmanager
def tls_server(ca: TestCA, tmp: Path, host_names: list[str]) -> Iterator[tuple[ImageServer, list[str | None]]]:
    seen_sni: list[str | None] = []
    server = ImageServer("127.0.0.1")
    server.socket = ca.server_context(tmp, host_names, seen_sni).wrap_socket(server.socket, server_side=True)
    with running(server):
        yield server, seen_sni


@pytest.fixture()
def fetcher(ca: TestCA) -> Iterator[HttpFetcher]:
    built = HttpFetcher(
        AddressGuard(LOOPBACK),
        allow_http=False,
        max_bytes=64 * 1024,
        connect_timeout_s=2,
        read_timeout_s=2,
        total_timeout_s=5,
        max_redirects=2,
        ssl_context=ca.client_context(),
    )
    with contextlib.closing(built):
        yield built


@pytest.fixture()
def named_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """`images.test` resolves to 127.0.0.1 (for this test only; no DNS involved)."""
    real = socket.getaddrinfo

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAMED_HOST:
            return real(host, port, *args, **kwargs)
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.mark.usefixtures("named_host")
def test_sni_and_certificate_use_the_host_name(fetcher: HttpFetcher, ca: TestCA, tmp_path: Path) -> None:
    with tls_server(ca, tmp_path, [NAMED_HOST]) as (server, seen_sni):
        assert fetcher.fetch(f"https://{NAMED_HOST}:{server.port}/image.png") == PNG
        assert fetcher.fetch(f"https://{NAMED_HOST}:{server.port}/hops/2") == PNG
    assert seen_sni == [NAMED_HOST] * 4
    assert {host for _path, host in server.requests} == {f"{NAMED_HOST}:{server.port}"}


def test_localhost_falls_back_across_its_addresses(fetcher: HttpFetcher, ca: TestCA, tmp_path: Path) -> None:
    """localhost may also resolve to ::1, where nothing listens; the fetch moves on to 127.0.0.1."""
    with tls_server(ca, tmp_path, ["localhost"]) as (server, seen_sni):
        assert fetcher.fetch(f"https://localhost:{server.port}/image.png") == PNG
    assert seen_sni[-1] == "localhost"


@pytest.mark.usefixtures("named_host")
def test_a_certificate_for_another_name_is_rejected(fetcher: HttpFetcher, ca: TestCA, tmp_path: Path) -> None:
    with tls_server(ca, tmp_path, ["other.test"]) as (server, _seen):
        with pytest.raises(ModerationFailed) as caught:
            fetcher.fetch(f"https://{NAMED_HOST}:{server.port}/image.png")
    assert caught.value.code == ErrorCode.FETCH_CONNECTION_FAILED
    assert "certificate" in caught.value.message.lower()
    assert server.requests == []


def test_an_ip_url_is_verified_against_the_ip(fetcher: HttpFetcher, ca: TestCA, tmp_path: Path) -> None:
    with tls_server(ca, tmp_path, [NAMED_HOST]) as (server, seen_sni):
        with pytest.raises(ModerationFailed) as caught:
            fetcher.fetch(f"https://127.0.0.1:{server.port}/image.png")
    assert caught.value.code == ErrorCode.FETCH_CONNECTION_FAILED
    assert seen_sni == [None]


@pytest.mark.usefixtures("named_host")
def test_a_redirect_to_plain_http_is_refused(fetcher: HttpFetcher, ca: TestCA, tmp_path: Path) -> None:
    with tls_server(ca, tmp_path, [NAMED_HOST]) as (server, _seen):
        url = f"https://{NAMED_HOST}:{server.port}/redirect?to=http://{NAMED_HOST}:{server.port}/image.png"
        with pytest.raises(ModerationFailed) as caught:
            fetcher.fetch(url)
    assert caught.value.code == ErrorCode.FETCH_SCHEME_UNSUPPORTED
