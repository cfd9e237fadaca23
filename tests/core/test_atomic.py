"""write_atomic: a reader sees the old file or the whole new one; no-clobber means no clobber."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from safeload._internal.atomic import write_atomic


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_no_clobber_refuses_an_existing_file_and_leaves_it_intact(tmp_path: Path) -> None:
    target = tmp_path / "model.sig"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError) as info:
        write_atomic(target, b"new", overwrite=False)
    assert info.value.errno == errno.EEXIST and info.value.filename == str(target)
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path, {"model.sig"}) == []


def test_no_clobber_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    """A symlink is a name that exists, even when what it points to does not."""
    target = tmp_path / "out.json"
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"new", overwrite=False)
    assert target.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_file_created_after_the_temp_write_is_not_clobbered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer creates the target between our temp file and our final step."""
    target = tmp_path / "export.json"
    real_link = os.link

    def racing_link(src: str, dst: str) -> None:
        Path(dst).write_bytes(b"theirs")  # the other writer wins the race
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"theirs"
    assert _leftovers(tmp_path, {"export.json"}) == []


@pytest.mark.parametrize("link_error", [errno.EPERM, errno.EXDEV, errno.ENOTSUP])
def test_without_hard_links_a_new_file_is_still_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link_error: int) -> None:
    def no_links(src: str, dst: str) -> None:
        raise OSError(link_error, os.strerror(link_error))

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "new.bin"
    write_atomic(target, b"data", overwrite=False)
    assert target.read_bytes() == b"data"
    assert _leftovers(tmp_path, {"new.bin"}) == []


def test_without_hard_links_an_existing_file_is_still_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "old.bin"

    def no_links_and_a_race(src: str, dst: str) -> None:
        Path(dst).write_bytes(b"theirs")
        raise OSError(errno.EPERM, "links not supported")

    monkeypatch.setattr(os, "link", no_links_and_a_race)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"theirs"


def _fail_with(name: str) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, f"{name}: No space left on device")

    return fail


# Each step on the path of each mode; no-clobber without links falls back to replace.
FAILING_STEPS = [(("fsync",), True), (("fsync",), False), (("chmod",), True),
                 (("chmod",), False), (("replace",), True), (("link", "replace"), False)]


@pytest.mark.parametrize(("steps", "overwrite"), FAILING_STEPS)
def test_failed_write_leaves_the_old_content_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: tuple[str, ...],
        overwrite: bool) -> None:
    if "chmod" in steps and os.name != "posix":
        pytest.skip("chmod runs on POSIX only")
    target = tmp_path / "trust.json"
    if overwrite:
        target.write_bytes(b"old content")
    for step in steps:
        monkeypatch.setattr(os, step, _fail_with(step))
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new content that must not half-appear", overwrite=overwrite)
    monkeypatch.undo()
    if overwrite:
        assert target.read_bytes() == b"old content"
    else:
        assert not target.exists()
    assert _leftovers(tmp_path, {"trust.json"}) == []


def test_short_write_failure_leaves_the_old_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk during the data write itself, not only at a later step."""
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int) -> None:
            self._f = real_fdopen(fd, "wb")

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

        def write(self, data: bytes) -> int:
            self._f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(fd))
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"x" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"a.json"}) == []


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "HEAD"
    target.write_bytes(b"one")
    inode = target.stat().st_ino
    write_atomic(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    # A new inode: a reader holding the old file keeps reading the whole old content.
    assert target.stat().st_ino != inode
    assert _leftovers(tmp_path, {"HEAD"}) == []


def test_overwrite_of_a_symlink_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    target = tmp_path / "out"
    target.symlink_to(victim)
    write_atomic(target, b"new", overwrite=True)
    assert victim.read_bytes() == b"keep me"
    assert not target.is_symlink() and target.read_bytes() == b"new"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_mode_is_applied_and_folders_are_created(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "a" / "b" / "file"
    write_atomic(target, b"x", mode=mode, dir_mode=0o700)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert stat.S_IMODE(target.parent.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("durable", [True, False])
def test_fsync_only_when_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 durable: bool) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    write_atomic(tmp_path / "f", b"x", durable=durable)
    # The file, then (POSIX) its folder; a cache (durable=False) pays for neither.
    assert len(calls) == ((2 if os.name == "posix" else 1) if durable else 0)
