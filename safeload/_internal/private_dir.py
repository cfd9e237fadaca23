"""Whether another user could replace what a path names: OpenSSH's secure-path rule.

Every existing directory from the path's up to `/` (lexically, and where a folder link leads)
must be owned by this user or root and not writable by group or others, except a sticky
directory (`/tmp`), where others may add entries but not replace or remove ours. A directory
that does not exist yet is judged by its parent (whoever can create it there could have).
A leaf: the trust store refuses on it, caches ignore themselves on it, the ledger warns.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from safeload._internal.text import safe_text


def others_could_replace(path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) for the first directory above `path` another user controls,
    or None. Not judged (None) where there are no POSIX owners."""
    if os.name != "posix":
        return None
    uid = os.getuid()
    lexical = Path(os.path.abspath(path)).parents
    real = Path(os.path.realpath(os.path.dirname(os.path.abspath(path)))) / "x"
    for d in dict.fromkeys([*lexical, *real.parents]):
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
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return (f"its directory {safe_text(d)} is writable by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):o})", f"chmod go-w {safe_text(d)}")
    return None


__all__ = ["others_could_replace"]
