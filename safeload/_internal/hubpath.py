"""Hugging Face cache paths, decided by the layout, never by a regex on a folder name.

How huggingface_hub lays out its cache (and how its readers behave, which this module models):

- `<cache>/<type>s--<ns>--<name>/` is one repo (`models--`, `datasets--`, `spaces--`); the
  repo id is the folder name after the first `--` with every `--` read as `/`
  (`_scan_cached_repo`), valid only if `huggingface_hub.utils.validate_repo_id` accepts it.
- `refs/<ref>` holds what `hf_hub_download` recorded for a ref name; `try_to_load_from_cache`
  reads it VERBATIM and uses it as the snapshot folder name, so `refs/main` = `v2` makes it
  return files under `snapshots/v2/`. Only a 40-hex name is a commit: any other snapshot name
  is resolved (a link to a sibling 40-hex snapshot, or `refs/<name>` holding a commit whose
  snapshot is the same folder) or refused.
- `snapshots/<commit>/<file>` is a relative symlink to `../../blobs/<blob>` (one more `../` per
  sub-folder); without symlink support (Windows) it is a regular file. Nothing else is written
  by the Hub client, so anything else (absolute links, links out of the repo, into another
  repo's blobs) is refused: a file there is not the repo's content.

Any path with `.../<type>s--*/snapshots/<name>/<file>` is a Hub file; the outermost such folder
counts (a repo may itself contain folders with such names). A folder that has the layout but
not a valid repo id is treated as a local file, with a warning.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from safeload._internal import consulted
from safeload._internal.small_file import REF_LIMIT, read_small
from safeload._internal.text import get_logger, safe_text
from safeload.errors import UnsafePathError

_logger = get_logger("safeload")

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_COMMIT = re.compile(r"[0-9a-f]{40}")
# The trust store's repo-id rule (trust._REPO): ASCII, each part starting alphanumeric.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_ASCII_REPO = re.compile(rf"(?:{_PART}/)?{_PART}")
_warned: set[str] = set()


@dataclass(frozen=True)
class HubFile:
    """A file inside a Hugging Face cache snapshot."""

    repo_type: str  # "model" | "dataset" | "space"
    repo_id: str
    snapshot_name: str  # the folder name under snapshots/ (a commit, or refused)
    repo_dir: Path  # lexical (not resolved): where the client put the repo
    filename: str  # posix path relative to the snapshot

    @property
    def snapshot(self) -> Path:
        return self.repo_dir / "snapshots" / self.snapshot_name

    @property
    def entry(self) -> Path:
        return self.snapshot / self.filename


def repo_id_from_folder(folder: str) -> tuple[str, str] | None:
    """(repo type, repo id) of a `models--ns--name` folder, or None if not a valid repo id."""
    prefix, sep, rest = folder.partition("--")
    if not sep or prefix not in REPO_TYPES:
        return None
    repo_id = rest.replace("--", "/")
    if not valid_repo_id(repo_id):
        return None
    return REPO_TYPES[prefix], repo_id


def valid_repo_id(repo_id: str) -> bool:
    """huggingface_hub's rule, and the trust store's (ASCII, parts start alphanumeric: the
    client's `\\w` accepts letters and leading `_` the trust store's names cannot express)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils._validators import validate_repo_id

    if not _ASCII_REPO.fullmatch(repo_id):
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def _layout(parts: tuple[str, ...]) -> int | None:
    """Index of the outermost `<type>s--*` part followed by `snapshots/<name>/<file...>`."""
    for i in range(len(parts) - 3):
        if parts[i + 1] == "snapshots" and parts[i].partition("--")[0] in REPO_TYPES \
                and "--" in parts[i]:
            return i
    return None


_MAX_HOPS = 40  # the kernel's own limit on a chain of links


def physical_path(path: str | os.PathLike[str]) -> str | None:
    """Where the kernel finds `path`'s last entry: its folder resolved (links, then `..`, as
    the kernel walks them), the entry itself not followed. `os.path.abspath` collapses `..`
    by spelling: `elsewhere/link/../model.safetensors` is then `elsewhere/...` while the
    kernel opens the file beside the link's target (review S-3). None: no such folder."""
    given = os.fspath(path)
    name = os.path.basename(given)
    folder = os.path.dirname(given) or "."
    if name in ("", ".", ".."):
        folder, name = given, ""
    try:
        real = os.path.realpath(folder)
    except OSError:
        return None
    consulted.note(os.path.realpath, folder, real)  # a folder link into a Hub cache
    return os.path.join(real, name) if name else real


def _link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _chain(path: str | os.PathLike[str]) -> Iterator[str]:
    """Where the kernel finds `path`, then each hop of its link chain (`/proc/self/fd/3` is
    a link to the file that descriptor holds)."""
    loc = physical_path(path)
    for _ in range(_MAX_HOPS):
        if loc is None:
            return
        yield loc
        target = _link_target(loc)
        consulted.note(_link_target, loc, target)
        if target is None:
            return
        loc = physical_path(os.path.join(os.path.dirname(loc), target))


def hub_file(path: str | os.PathLike[str]) -> HubFile | None:
    """The Hub file `path` is, by the cache layout of where the kernel finds it: the entry
    itself, else each link of its chain in turn (a file link to a snapshot entry is that
    entry), else, as spelled, the path itself.

    A path with the layout but an invalid repo id is a local file (warned once).
    """
    return hub_origin(path)[0]


def hub_origin(path: str | os.PathLike[str]) -> tuple[HubFile | None, str | None]:
    """(`hub_file(path)`, else the repo id whose cache `blobs/` folder holds the file the path
    reaches: directly, through links, or as `/proc/self/fd/N`), in one walk of the chain. A
    blob names no revision and no file, so the Hub rules keyed by those cannot be applied to
    it (review X)."""
    found: HubFile | str | None = None
    blob: str | None = None
    for loc in _chain(path):
        parts = Path(loc).parts
        found = _from_parts(parts)
        if found is not None:
            break
        if blob is None and len(parts) >= 3 and parts[-2] == "blobs":
            ident = repo_id_from_folder(parts[-3])
            blob = ident[1] if ident is not None else None
    if found is None:
        found = _from_parts(Path(os.path.abspath(path)).parts)
    if isinstance(found, HubFile):
        return found, None
    return None, blob


def _from_parts(parts: tuple[str, ...]) -> HubFile | str | None:
    i = _layout(parts)
    if i is None:
        return None
    ident = repo_id_from_folder(parts[i])
    if ident is None:
        key = "/".join(parts[: i + 1])
        if key not in _warned:
            _warned.add(key)
            _logger.warning("%s has the Hugging Face cache layout, but %s is not a valid repo "
                            "folder name: treated as a local file (no Hub trust rules apply)",
                            safe_text(key), safe_text(parts[i]))
        return "not-a-repo"
    return HubFile(ident[0], ident[1], parts[i + 2], Path(*parts[: i + 1]),
                   "/".join(parts[i + 3:]))


def resolve_commit(hf: HubFile) -> str:
    """The 40-hex commit of the file's snapshot.

    Raises:
        UnsafePathError: the snapshot name is not a commit and resolves to none.
    """
    name = hf.snapshot_name
    if _COMMIT.fullmatch(name):
        return name
    snapshots = hf.repo_dir / "snapshots"
    snap = snapshots / name
    # A link to a sibling 40-hex snapshot.
    with_link = _sibling_commit(snapshots, snap)
    if with_link is not None:
        return with_link
    # refs/<name> holding a commit whose snapshot is this very folder.
    ref = hf.repo_dir / "refs" / name
    data = read_small(ref, REF_LIMIT)
    try:
        commit = data.decode("ascii").strip() if data is not None else ""
    except UnicodeDecodeError:
        commit = ""
    if _COMMIT.fullmatch(commit) and _same_dir(snapshots / commit, snap):
        return commit
    raise UnsafePathError(
        f"{safe_text(hf.entry)}: the snapshot folder {safe_text(name)!s} of "
        f"{safe_text(hf.repo_id)} is not a commit hash and resolves to no commit",
        hint="huggingface_hub reads refs/ verbatim: fix refs/ to hold the commit hash, or "
             "download the revision again (hf download --revision <commit>)")


def _sibling_commit(snapshots: Path, snap: Path) -> str | None:
    try:
        if not snap.is_symlink():
            return None
        target = Path(os.path.realpath(snap))
        if target.parent != Path(os.path.realpath(snapshots)):
            return None
    except OSError:
        return None
    return target.name if _COMMIT.fullmatch(target.name) and target.is_dir() else None


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _refuse(hf: HubFile, why: str) -> UnsafePathError:
    return UnsafePathError(
        f"{safe_text(hf.entry)}: {why}; not a file the Hugging Face client wrote, refused",
        hint="delete the entry and download the file again (hf download "
             f"{safe_text(hf.repo_id)})")


def first_hop(path: str | os.PathLike[str]) -> str | None:
    """The file name a snapshot entry's link points at, from its FIRST hop (never realpath).

    The Hub names an LFS blob by its content's sha256 and a small file by its git blob id; a
    shared store further down the chain (Xet) names things differently, so only the first hop
    says what the client downloaded. None when the entry is not a link.
    """
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def expected_blob(hf: HubFile) -> Path | None:
    """Where the snapshot entry may lead: `blobs/<name>` of its repo, or None for a regular file.

    Raises:
        UnsafePathError: anything but a regular file inside the snapshot or a relative link
            whose first hop is `../../blobs/<name>` (one `../` more per sub-folder) in the repo.
    """
    entry = hf.entry
    try:
        st = os.lstat(entry)
        real_parent = os.path.realpath(entry.parent)
    except OSError as exc:
        raise _refuse(hf, f"cannot be read ({exc.strerror})") from None
    repo_real = os.path.realpath(hf.repo_dir)
    if not _inside(real_parent, os.path.join(repo_real, "snapshots")):
        raise _refuse(hf, "its folder resolves outside the repo's snapshots")
    if stat.S_ISREG(st.st_mode):
        return None
    if not stat.S_ISLNK(st.st_mode):
        raise _refuse(hf, "not a regular file or a link to a blob")
    target = os.readlink(entry)
    if os.path.isabs(target):
        raise _refuse(hf, f"an absolute link (to {safe_text(target)})")
    depth = len(Path(real_parent).relative_to(repo_real).parts)
    hops = Path(target).parts
    ups, blobs, name = (list(hops[:-2]), hops[-2], hops[-1]) if len(hops) >= 2 else ([], "", "")
    if ups != [".."] * depth or blobs != "blobs" or name in ("", ".", ".."):
        raise _refuse(hf, f"a link to {safe_text(target)}, not to ../{'../' * (depth - 1)}"
                          "blobs/<name> of its repo")
    return Path(repo_real) / "blobs" / name


def check_held(hf: HubFile, fd: int) -> None:
    """The held descriptor is the entry the layout allows (checked after opening: no race).

    Raises:
        UnsafePathError: see `expected_blob`; or the entry changed around the open.
    """
    blob = expected_blob(hf)
    try:
        held = os.fstat(fd)
        now = os.stat(blob if blob is not None else hf.entry)
    except OSError as exc:
        raise _refuse(hf, f"its blob cannot be read ({exc.strerror})") from None
    cache_real = os.path.realpath(hf.repo_dir.parent)
    if blob is not None and not _inside(os.path.realpath(blob), cache_real):
        raise _refuse(hf, "its blob resolves outside the cache")
    if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
        raise _refuse(hf, "the file opened is not the blob the entry names (it changed "
                          "while it was opened)")


__all__ = ["HubFile", "check_held", "expected_blob", "first_hop", "hub_file", "repo_id_from_folder",
           "resolve_commit", "valid_repo_id"]
