"""The image-source contract: `TestImageSourceContract` runs unchanged against every `ImageSource`.

Real services, no skips: https/http against a loopback HTTP server (through the real address guard, which
allows only loopback here), s3 against moto's server (a bucket per test, the allowlist naming it), file
beneath a temporary shared root, inline bytes, and the in-memory double. Each source is built the way the
composition root builds it (`composition.image_sources`), and each names one reference it must refuse and the
code it refuses with. Below the contract: the registry's dispatch by scheme.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from worker import composition
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.sources import INLINE, ImageSource, MemorySource, SourceRegistry, scheme_of
from worker.models import ImageRef
from worker.settings import Settings

MAX_BYTES = 4096
IMAGE = bytes(range(256)) * 8  # 2 KiB: the sources return bytes unread, so any bytes stand for an image


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.files.get(self.path)  # type: ignore[attr-defined]
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture()
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.files = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Case:
    """One source under test: how to put bytes where it reads them, and what it must refuse."""

    source: ImageSource
    place: Callable[[bytes], ImageRef]
    refused: ImageRef
    refusal: ErrorCode


def _settings(**extra: Any) -> Settings:
    return Settings(max_image_bytes=MAX_BYTES, allowed_networks=["127.0.0.0/8"], allow_http=True,
                    fetch_connect_timeout_s=2, fetch_read_timeout_s=2, fetch_total_timeout_s=5, **extra)


def _http(request: pytest.FixtureRequest) -> Case:
    server = request.getfixturevalue("http_server")
    port = server.server_address[1]

    def place(data: bytes) -> ImageRef:
        server.files[f"/{len(server.files)}.png"] = data
        return ImageRef(url=f"http://127.0.0.1:{port}/{len(server.files) - 1}.png")

    source = composition.image_sources(_settings()).sources["http"]
    # 10.0.0.1 is private and not allowed: refused before any connection (nothing listens there)
    return Case(source, place, ImageRef(url="http://10.0.0.1/x.png"), ErrorCode.FETCH_ADDRESS_REFUSED)


def _s3(request: pytest.FixtureRequest) -> Case:
    s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
    keys = iter(range(1_000))

    def place(data: bytes) -> ImageRef:
        key = f"images/{next(keys)}.png"
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        return ImageRef(url=f"s3://{bucket}/{key}")

    source = composition.image_sources(_settings(s3_allowed_buckets=[bucket]), s3).sources["s3"]
    return Case(source, place, ImageRef(url="s3://not-listed-bucket/x.png"), ErrorCode.FETCH_ADDRESS_REFUSED)


def _file(request: pytest.FixtureRequest) -> Case:
    root: Path = request.getfixturevalue("tmp_path") / "shared"
    root.mkdir()
    names = iter(range(1_000))

    def place(data: bytes) -> ImageRef:
        path = root / f"{next(names)}.png"
        path.write_bytes(data)
        return ImageRef(url=path.as_uri())

    outside = root.parent / "outside.png"
    outside.write_bytes(IMAGE)
    source = composition.image_sources(_settings(shared_root=str(root))).sources["file"]
    return Case(source, place, ImageRef(url=outside.as_uri()), ErrorCode.FILE_NOT_ALLOWED)


def _inline(request: pytest.FixtureRequest) -> Case:
    source = composition.image_sources(_settings()).sources[INLINE]
    return Case(source, lambda data: ImageRef(data=data), ImageRef(data=b""), ErrorCode.IMAGE_EMPTY)


def _memory(request: pytest.FixtureRequest) -> Case:
    double = MemorySource({}, MAX_BYTES)

    def place(data: bytes) -> ImageRef:
        url = f"mem://images/{len(double.objects)}.png"
        double.objects[url] = data
        return ImageRef(url=url)

    return Case(double, place, ImageRef(url="mem://images/missing.png"), ErrorCode.FETCH_NOT_FOUND)


CASES: dict[str, Callable[[pytest.FixtureRequest], Case]] = {
    "http": _http, "s3": _s3, "file": _file, "inline": _inline, "memory": _memory,
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    built = CASES[request.param](request)
    yield built
    built.source.close()


def code_of(source: ImageSource, ref: ImageRef) -> ErrorCode:
    with pytest.raises(ModerationFailed) as caught:
        source.fetch(ref)
    return caught.value.code


class TestImageSourceContract:
    def test_returns_the_bytes_placed(self, case: Case) -> None:
        assert case.source.fetch(case.place(IMAGE)) == IMAGE

    def test_accepts_exactly_the_size_limit(self, case: Case) -> None:
        exact = b"\x89" * MAX_BYTES
        assert case.source.fetch(case.place(exact)) == exact

    def test_refuses_one_byte_over_the_limit_as_image_too_large(self, case: Case) -> None:
        assert code_of(case.source, case.place(b"\x89" * (MAX_BYTES + 1))) is ErrorCode.IMAGE_TOO_LARGE

    def test_refuses_what_it_must_with_its_code(self, case: Case) -> None:
        assert code_of(case.source, case.refused) is case.refusal

    def test_serves_threads_at_once(self, case: Case) -> None:
        refs = [case.place(bytes([n]) * 100) for n in range(8)]
        results: dict[int, bytes] = {}
        threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, case.source.fetch(refs[n])))
                   for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == {n: bytes([n]) * 100 for n in range(8)}


# -- the registry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "scheme"), [
    (ImageRef(url="HTTPS://cdn.example/a.png"), "https"), (ImageRef(url="s3://b/k"), "s3"),
    (ImageRef(url="file:///srv/a.png"), "file"), (ImageRef(data=b"x"), INLINE), (ImageRef(url="no-scheme"), ""),
])
def test_scheme_of(ref: ImageRef, scheme: str) -> None:
    assert scheme_of(ref) == scheme


def test_registry_dispatches_by_scheme_to_the_registered_source() -> None:
    registry = SourceRegistry({"mem": MemorySource({"mem://a": b"A"}, MAX_BYTES),
                               "other": MemorySource({"other://a": b"B"}, MAX_BYTES)})
    assert registry.fetch(ImageRef(url="mem://a")) == b"A"
    assert registry.fetch(ImageRef(url="other://a")) == b"B"


@pytest.mark.parametrize("url", ["ftp://host/a.png", "gopher://x", "data:image/png;base64,AAAA", "no-scheme"])
def test_unknown_scheme_fails_fetch_scheme_unsupported(url: str) -> None:
    registry = composition.image_sources(_settings())
    assert code_of(registry, ImageRef(url=url)) is ErrorCode.FETCH_SCHEME_UNSUPPORTED
    registry.close()


def test_s3_without_a_client_and_file_without_a_root_fail_fetch_scheme_unsupported() -> None:
    registry = composition.image_sources(_settings())
    for url in ("s3://bucket/key.png", "file:///srv/a.png"):
        assert code_of(registry, ImageRef(url=url)) is ErrorCode.FETCH_SCHEME_UNSUPPORTED
    registry.close()
