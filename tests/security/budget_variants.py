"""Files that are cheap to ship and expensive to inspect: each is a small file whose work (pickle
opcodes, decompressed bytes, rule walks) adds up across members, streams and memo references.

`variants(scale, payload)` builds every family at a size of about `scale` opcodes (or bytes) in
all: the tests use a small scale under a lowered budget, benchmarks/bench_budget.py the default
budget with the sizes that took tens of seconds before the whole-file budget. Where `payload` is
given (a pickle that fires a canary), it sits after the expensive part, with the loader that runs
it (a zipfile member name, or "" for torch.load / pickle.load of the whole file).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass

from canary_lib import ZEntry, build_zip


@dataclass(frozen=True)
class Variant:
    id: str
    data: bytes
    loader: str  # "zip-member", "torch", "pickle" or "" (no payload: a cost only)
    member: str = ""


def _noops(n: int) -> bytes:
    """n opcodes that leave the stack as it was (NONE, POP)."""
    return b"N0" * (n // 2)


def _stream(n: int, payload: bytes | None = None) -> bytes:
    """A protocol-2 pickle walking about n opcodes, then the payload's value (or None)."""
    tail = payload[2:] if payload is not None else b"N."
    return b"\x80\x02" + _noops(n) + tail


def _deflated(entries: list[ZEntry]) -> list[ZEntry]:
    for e in entries:
        e.method = 8
    return entries


def variants(scale: int, payload: bytes | None = None) -> list[Variant]:
    out: list[Variant] = []
    evil = payload or b"\x80\x02N."
    # The file: a few deflated members, each just under a per-stream bound.
    members = [ZEntry(f"m{i}.pkl", _stream(scale // 3)) for i in range(4)]
    members.append(ZEntry("z.pkl", evil))
    out.append(Variant("few-big-members", build_zip(_deflated(members)), "zip-member", "z.pkl"))
    # Thousands of tiny members: no single one is expensive.
    count = 400
    small = [ZEntry(f"s{i:05d}.pkl", _stream(3 * scale // count)) for i in range(count)]
    small.append(ZEntry("z.pkl", evil))
    out.append(Variant("many-small-members", build_zip(_deflated(small)), "zip-member", "z.pkl"))
    # A torch archive whose extra .pkl members (read completely) carry the work, the payload in
    # data.pkl after a long benign prefix.
    extra = [ZEntry(f"archive/x{i}.pkl", _stream(scale // 2)) for i in range(3)]
    data_pkl = _stream(scale // 2, payload)
    torch_zip = build_zip(_deflated([ZEntry("archive/data.pkl", data_pkl), *extra,
                                     ZEntry("archive/version", b"3\n")]))
    out.append(Variant("torch-extra-pickles", torch_zip, "torch" if payload else ""))
    # One stream of many tiny frames (protocol 4 FRAME before every two opcodes).
    frames = b"\x80\x04" + b"\x95\x02\x00\x00\x00\x00\x00\x00\x00N0" * (scale // 2) + (
        payload[2:] if payload else b"N.")
    out.append(Variant("many-frames", frames, "pickle" if payload else ""))
    # Concatenated pickles: a pickle_stream loader reads them all; the inspector refuses the
    # bytes after STOP and reports what the next streams would do.
    out.append(Variant("stream-after-stop", _stream(100) + _stream(2 * scale, payload),
                       "pickle_stream" if payload else ""))
    out.extend(_memo_blowups(scale))
    return out


def _memo_blowups(scale: int) -> list[Variant]:
    """Linear opcodes, quadratic work: one memoised value handed to a rule over and over."""
    n = max(scale // 50, 100)
    calls = max(scale // 10, 100)
    pairs = b"](" + b"K\x01K\x02\x86" * n + b"eq\x01"
    od = (b"\x80\x02ccollections\nOrderedDict\nq\x000" + pairs + b"0"
          + b"h\x00h\x01\x85R0" * calls + b"N.")
    text = b"X" + struct.pack("<I", 64 * n) + b"a" * (64 * n)
    enc = (b"\x80\x02c_codecs\nencode\nq\x000" + text + b"q\x010"
           + b"h\x00h\x01X\x06\x00\x00\x00latin1\x86R0" * calls + b"N.")
    key = b"(" + b"K\x01" * n + b"tq\x010"
    keys = b"\x80\x02" + key + b"}(" + b"h\x01N" * calls + b"u."
    # A list whose every "pair" is the same big list: not copied once per use.
    big = b"](" + b"K\x01" * n + b"eq\x010"
    fake_pairs = (b"\x80\x02ccollections\nOrderedDict\nq\x000" + big + b"h\x00](" + b"h\x01" * calls
                  + b"e\x85R.")
    return [Variant("memo-ordereddict", od, ""), Variant("memo-codecs-encode", enc, ""),
            Variant("memo-tuple-keys", keys, ""), Variant("memo-fake-pairs", fake_pairs, "")]


def bombs(size: int) -> list[Variant]:
    """Decompression amplification: each member (or wrapper) inflates `size` bytes of zeros
    (not a format anything loads, so only the inflating costs) from a few KB."""
    zeros = bytes(size)
    members = [ZEntry(f"b{i}.bin", zeros, method=8) for i in range(4)]
    out = [Variant("zip-bomb-members", build_zip(members), "")]
    # A torch archive whose .pkl members inflate: read completely, each one a bomb.
    torch_members = [ZEntry("archive/data.pkl", b"\x80\x02N.", method=8),
                     *(ZEntry(f"archive/b{i}.pkl", zeros, method=8) for i in range(4))]
    out.append(Variant("zip-bomb-torch-pickles", build_zip(torch_members), ""))
    out.append(Variant("gzip-bomb", gzip.compress(bytes(4 * size), 9), ""))
    out.append(Variant("zlib-bomb", zlib.compress(bytes(4 * size), 9), ""))
    return out


__all__ = ["Variant", "bombs", "variants"]
