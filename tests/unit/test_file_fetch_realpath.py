"""`os.path.realpath` failing mid-resolution (a symlink swapped while it is read) ends as a clean refusal.

realpath lstat()s and readlink()s every component; a component that stops being a symlink between the two
makes readlink fail with EINVAL, which used to escape the intake as a bare OSError (no verdict at all).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from worker import composition
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.file_fetch import FileFetcher, file_uri
from worker.models import ImageRef
from worker.settings import load_settings
from worker.standin.palette import make_image


def _failing_realpath(error: int) -> object:
    def realpath(path: object, *args: object, **kwargs: object) -> str:
        raise OSError(error, os.strerror(error), str(path))

    return realpath


@pytest.mark.parametrize(("error", "code"), [
    (errno.EINVAL, ErrorCode.FILE_NOT_ALLOWED),
    (errno.ELOOP, ErrorCode.FILE_NOT_ALLOWED),
    (errno.ENOENT, ErrorCode.FILE_NOT_FOUND),
    (errno.EIO, ErrorCode.FILE_NOT_FOUND),
])
def test_realpath_errors_become_a_failure_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, code: ErrorCode
) -> None:
    (tmp_path / "cat.png").write_bytes(make_image("O4", size=(8, 8)))
    intake = composition.intake(load_settings(shared_root=str(tmp_path)))
    monkeypatch.setattr(os.path, "realpath", _failing_realpath(error))
    with pytest.raises(ModerationFailed) as caught:  # never a bare OSError
        intake.load(ImageRef(url=file_uri(tmp_path / "cat.png")))
    assert caught.value.code == code


def test_only_the_image_path_failing_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root resolves, the image's path does not: the same refusal."""
    (tmp_path / "cat.png").write_bytes(b"x")
    real = os.path.realpath

    def realpath(path: str, *args: object, **kwargs: object) -> str:
        if str(path).endswith("cat.png"):
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return real(path)

    monkeypatch.setattr(os.path, "realpath", realpath)
    with pytest.raises(ModerationFailed) as caught:
        FileFetcher(tmp_path, 1024).fetch(file_uri(tmp_path / "cat.png"))
    assert caught.value.code == ErrorCode.FILE_NOT_ALLOWED
