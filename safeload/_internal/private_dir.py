"""Whether another user could replace what a path names: OpenSSH's secure-path rule.

Every existing directory from the path's up to `/` (lexically, and where a folder link leads)
must be owned by this user or root and not writable by group or others, except a sticky
directory (`/tmp`), where others may add entries but not replace or remove ours. A directory
that does not exist yet is judged by its parent (whoever can create it there could have).
A leaf: the trust store refuses on it, caches ignore themselves on it, the ledger warns.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from safeload._internal.text import safe_text


@functools.lru_cache(maxsize=4)  # (the user database is read once per process)
def _private_group(uid: int) -> int | None:
    """This user's own group (Fedora/RHEL's user private groups, where umask 002 makes
    `~/.cache` 0775): named as the user, with no other members. Group-writable is private
    there (review Q: every pickle load failed)."""
    try:
        import grp
        import pwd

        user = pwd.getpwuid(uid)
        group = grp.getgrgid(user.pw_gid)
    except (ImportError, KeyError):
        return None
    others = [m for m in group.gr_mem if m != user.pw_name]
    if group.gr_name != user.pw_name or others:
        return None
    try:  # nobody else has it as their primary group either
        if any(p.pw_gid == group.gr_gid and p.pw_uid != uid for p in pwd.getpwall()):
            return None
    except OSError:
        return None
    return group.gr_gid


def others_could_replace(path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) for the first directory above `path` another user controls,
    or None. Not judged (None) where there are no POSIX owners."""
    if os.name != "posix":
        return None
    uid = os.getuid()
    # realpath of the path as given: `link/../x` is where the link leads, then up (abspath
    # first would drop the link: review Q). Strings, not pathlib: this runs on every load.
    real = os.path.realpath(os.path.join(os.fspath(path), os.pardir))
    private_group = _private_group(uid)
    for d in dict.fromkeys([*_parents(os.path.dirname(os.path.abspath(path))),
                            *_parents(real)]):
        try:
            st = os.stat(d)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return (f"its directory {safe_text(d)} cannot be checked ({exc.strerror})",
                    "check the permissions of the path")
        if st.st_uid not in (uid, 0):
            return (f"its directory {safe_text(d)} is owned by another user (uid {st.st_uid})",
                    f"chown {uid} {safe_text(d)}")
        writers = st.st_mode & (0o002 if st.st_gid == private_group else 0o022)
        if writers and not st.st_mode & stat.S_ISVTX:
            return (f"its directory {safe_text(d)} is writable by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):o})", f"chmod go-w {safe_text(d)}")
    return None


def _parents(folder: str) -> list[str]:
    """`folder` and every folder above it, up to `/`."""
    out = [folder]
    while (up := os.path.dirname(folder)) != folder:
        out.append(up)
        folder = up
    return out


__all__ = ["others_could_replace"]
