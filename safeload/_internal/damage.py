"""A refusal that is damage, not danger: a truncated or corrupt file no loader runs code from.

torch.load raises RuntimeError (early EOF: EOFError) for such a file, and a resume loop catches
those; `UnsafeCheckpointError` stays for files that could run code. A verdict counts as damage
only when the findings show both that the file broke and that nothing before or past the break
imports: every finding is a parse failure (none names a global), and for a plain pickle the
inspector's lenient walk past the failure reached no import (it would have added a finding).
Anything else stays unsafe (fail closed).
"""

from __future__ import annotations

from typing import Any

from safeload._internal.npyformat import TRUNCATED as NPY_TRUNCATED
from safeload._internal.reach import would_import
from safeload.inspection import Inspection

# Damage after every pickle of a legacy file parsed clean: the raw storage bytes are short.
_LEGACY_SHORT = ("truncated before storage ", "storage ")
_ZIP_TRUNCATED = "no end-of-central-directory record at the end of the file"
_WRAPPERS = ("zlib", "gzip", "bz2", "xz", "lzma-alone", "joblib-zfile")


def _cut_short(message: str) -> bool:
    """zlib's "truncated stream", gzip's and bz2's "Compressed file ended before the
    end-of-stream marker", lzma's "Compressed data ended before ..."."""
    return message.startswith("corrupt ") and ("truncated" in message or "ended before" in
                                               message)


def _whole_end_record(tail: bytes) -> bool:
    """Whether the last 64 KiB hold a whole end-of-central-directory record (22 bytes from its
    signature), as zipfile and miniz search for one backwards."""
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:
        if at + 22 <= len(tail):
            return True
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return False


def _cut(message: str) -> bool:
    """A pickle stream that ends early: protocols 0-3 say "truncated", 4 and 5 (Python 3's
    default) cut inside their FRAME (review O)."""
    return "truncated" in message or "FRAME longer than the stream" in message


def _cut_finding(f: Any) -> bool:
    """A cut stream, or a joblib array whose raw bytes the file's end cuts short."""
    return (f.code == "malformed" and _cut(f.message)) or (
        f.code == "build-not-allowed" and "bytes run past the end of the stream" in f.message)


def damage(ins: Inspection, buf: Any) -> tuple[str, bool] | None:
    """(what is wrong, whether the bytes end early) for a damaged file, or None."""
    findings = ins.findings
    if ins.verdict != "unsafe" or not findings or any(f.global_name for f in findings):
        return None
    first = findings[0].message
    # Only a stream cut short: bytes after STOP are a second stream another loader may read,
    # and a value the rules refuse (a Python 2 string) is no interrupted write.
    if ins.format == "pickle" and all(_cut_finding(f) for f in findings):
        return first, True
    if ins.format == "torch-legacy" and len(findings) == 1 and findings[0].code == "malformed" \
            and (first.startswith(_LEGACY_SHORT) and "disagrees with" not in first
                 or first == "malformed pickle: truncated stream"):
        return first, True  # (torch: EOFError, "Ran out of input")
    if ins.format in _WRAPPERS and _cut_short(first) and all(
            (f.code == "malformed" and _cut_short(f.message)) or _cut_finding(f)
            for f in findings):
        # A compressed stream cut short (an interrupted joblib.dump or download): joblib and
        # the decompressor fail there; a raw reading as a pickle would have added a finding.
        return first, True
    if ins.format == "numpy" and [f.code for f in findings] == ["malformed"] \
            and first.startswith(NPY_TRUNCATED):
        return first, True  # (np.load: "EOF: reading array data")
    if ins.format == "zip" and [f.message for f in findings] == [_ZIP_TRUNCATED] \
            and not _whole_end_record(bytes(buf[-(1 << 16) - 22:])) \
            and would_import(buf, persistent_calls=True) is None:
        # No zip reader (torch's miniz, zipfile) opens it: both search the last 64 KiB for the
        # record, so one there with bytes after it is no cut (review Q). Read as a pickle it
        # imports nothing.
        return first, True
    if ins.format == "torch-zip" and all(f.code == "bad-record" for f in findings):
        # A record torch's reader refuses (version, alignment, serialization id): corrupt,
        # and torch raises RuntimeError or ValueError, as MalformedFileError is both.
        return first, False
    return None


__all__ = ["damage"]
