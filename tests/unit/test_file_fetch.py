"""`file://` intake: only regular files beneath the shared root, whatever `..` or symlinks say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker import composition
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.file_fetch import FileFetcher, _open_beneath, _translate, file_uri, path_of_file_uri
from worker.models import ImageRef
from worker.settings import load_settings
from worker.standin.palette import make_image

PNG = make_image("O4", size=(16, 16))


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(shared root, a folder outside it), with images in both."""
    root, outside = tmp_path / "shared", tmp_path / "private"
    (root / "set" / "a b").mkdir(parents=True)
    outside.mkdir()
    (root / "set" / "cat.png").write_bytes(PNG)
    (root / "set" / "a b" / "odd?#name.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(PNG)
    return root, outside


def failure(fetcher: FileFetcher, uri: str) -> ModerationFailed:
    with pytest.raises(ModerationFailed) as caught:
        fetcher.fetch(uri)
    return caught.value


def test_reads_files_beneath_the_root_including_awkward_names(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    fetcher = FileFetcher(root, max_bytes=1 << 20)
    assert fetcher.fetch(file_uri(root / "set" / "cat.png")) == PNG
    awkward = file_uri(root / "set" / "a b" / "odd?#name.png")
    assert "%3F" in awkward and "%23" in awkward
    assert fetcher.fetch(awkward) == PNG
    assert fetcher.fetch("file://localhost" + str(root / "set" / "cat.png")) == PNG


def test_a_symlink_that_stays_inside_the_root_is_followed(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "alias.png").symlink_to(root / "set" / "cat.png")
    assert FileFetcher(root, 1 << 20).fetch(file_uri(root / "alias.png")) == PNG


@pytest.mark.parametrize("escape", ["dotdot", "symlink_file", "symlink_dir", "absolute"])
def test_everything_outside_the_root_is_refused(tree: tuple[Path, Path], escape: str) -> None:
    root, outside = tree
    if escape == "dotdot":
        uri = "file://" + str(root) + "/set/../../private/secret.png"
    elif escape == "symlink_file":
        (root / "link.png").symlink_to(outside / "secret.png")
        uri = file_uri(root / "link.png")
    elif escape == "symlink_dir":
        (root / "door").symlink_to(outside, target_is_directory=True)
        uri = file_uri(root / "door" / "secret.png")
    else:
        uri = file_uri(outside / "secret.png")
    error = failure(FileFetcher(root, 1 << 20), uri)
    assert error.code == ErrorCode.FILE_NOT_ALLOWED
    assert "outside" in error.message


def test_a_root_that_is_itself_a_symlink_works(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tree
    (tmp_path / "mnt").symlink_to(root, target_is_directory=True)
    fetcher = FileFetcher(tmp_path / "mnt", 1 << 20)
    assert fetcher.fetch(file_uri(tmp_path / "mnt" / "set" / "cat.png")) == PNG
    assert fetcher.fetch(file_uri(root / "set" / "cat.png")) == PNG  # same files, by their real path


def test_missing_files_directories_and_fifos(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    fetcher = FileFetcher(root, 1 << 20)
    assert failure(fetcher, file_uri(root / "set" / "nope.png")).code == ErrorCode.FILE_NOT_FOUND
    assert failure(fetcher, file_uri(root / "set" / "cat.png" / "x")).code == ErrorCode.FILE_NOT_FOUND
    assert failure(fetcher, file_uri(root / "set")).code == ErrorCode.FILE_NOT_FOUND
    assert failure(fetcher, file_uri(root)).code == ErrorCode.FILE_NOT_FOUND
    os.mkfifo(root / "pipe.png")
    error = failure(fetcher, file_uri(root / "pipe.png"))  # must not block waiting for a writer
    assert error.code == ErrorCode.FILE_NOT_FOUND and "regular file" in error.message


def test_a_symlink_swapped_in_after_the_check_is_refused(tree: tuple[Path, Path]) -> None:
    """The open walks the checked components with O_NOFOLLOW: a symlink there now (a race) is refused."""
    root, outside = tree
    (root / "swapped").symlink_to(outside, target_is_directory=True)
    (root / "swapped.png").symlink_to(outside / "secret.png")
    for components in (["swapped", "secret.png"], ["swapped.png"]):
        with pytest.raises(OSError) as caught:
            _open_beneath(os.path.realpath(root), components)
        translated = _translate("/x", caught.value)
        assert translated.code == ErrorCode.FILE_NOT_ALLOWED, components


def test_size_limit_and_empty_files(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "empty.png").write_bytes(b"")
    assert failure(FileFetcher(root, 1 << 20), file_uri(root / "empty.png")).code == ErrorCode.IMAGE_EMPTY
    small = FileFetcher(root, max_bytes=len(PNG) - 1)
    assert failure(small, file_uri(root / "set" / "cat.png")).code == ErrorCode.IMAGE_TOO_LARGE


def test_without_a_shared_root_file_uris_are_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    error = failure(FileFetcher(None, 1 << 20), file_uri(root / "set" / "cat.png"))
    assert error.code == ErrorCode.FETCH_SCHEME_UNSUPPORTED and "LLAVAGUARD_SHARED_ROOT" in error.message


@pytest.mark.parametrize("uri", ["file://otherhost/etc/passwd", "file:relative.png", "file:///a\x00b"])
def test_malformed_file_uris(uri: str) -> None:
    with pytest.raises(ModerationFailed) as caught:
        path_of_file_uri(uri)
    assert caught.value.code == ErrorCode.REQUEST_INVALID


def test_intake_dispatches_file_uris_to_the_shared_root(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    intake = composition.intake(load_settings(shared_root=str(root)))
    try:
        prepared = intake.load(ImageRef(url=file_uri(root / "set" / "cat.png")))
        assert prepared.info.source == file_uri(root / "set" / "cat.png") and prepared.info.width == 16
        with pytest.raises(ModerationFailed) as caught:
            intake.load(ImageRef(url=file_uri(outside / "secret.png")))
        assert caught.value.code == ErrorCode.FILE_NOT_ALLOWED
    finally:
        intake.close()
