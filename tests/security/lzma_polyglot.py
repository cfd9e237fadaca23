"""An LZMA-alone stream that is also a pickle: a generator for the polyglot canary.

Found by the hostile review of 2026-12-07: `]` (EMPTY_LIST) opens both an LZMA-alone header and
a pickle; SHORT_BINBYTES (`C`, then the header's dictionary-size byte as its length) makes a
pickle reader jump over the header into the compressed data, where the payload's opcodes sit.
This module is an exact LZMA1 decoder (lc3 lp0 pb2) run over an interval of possible inputs: it
picks the free bytes so that liblzma inflates the file to a harmless `BINBYTES(zeros) STOP`
pickle while the raw bytes keep the payload, and the range coder ends exactly (no trailing data).
"""

from __future__ import annotations

import lzma
import struct

TOP = 1 << 24


class Fail(Exception):
    pass


class Dec:
    def __init__(s, fixed, nfixed_end, policy):
        s.fixed = fixed  # {index: byte} for bytes after the 13-byte header
        s.policy = policy
        s.n = 0
        s.A = 0
        s.B = 1
        s.L = 0
        s.r = 0xFFFFFFFF
        s.free = False
        for _ in range(5):
            s.shift()
        s.cut(0, 0xFFFFFFFF)  # code < range
        s.out = bytearray()
        s.eopm = False

    def shift(s):
        s.A <<= 8
        s.B <<= 8
        s.L <<= 8
        s.n += 1
        i = s.n - 1
        if i in s.fixed:
            c = s.fixed[i]
            v = s.A + ((c - s.A) % 256)
            if v >= s.B:
                raise Fail(f"committed byte impossible at {i}")
            s.A, s.B = v, v + 1

    def cut(s, lo, hi):
        s.A, s.B = max(s.A, lo), min(s.B, hi)
        if s.A >= s.B:
            raise Fail("empty")

    def choose(s, split, want):
        """The bit the interval of inputs forces at `split`, else the one wanted (a free byte)."""
        if split >= s.B:
            return 0
        if split <= s.A:
            return 1
        s.free = True
        return want

    def norm(s):
        if s.r < TOP:
            s.r <<= 8
            s.shift()

    def bit(s, probs, i, want):
        s.norm()
        p = probs[i]
        bound = (s.r >> 11) * p
        split = s.L + bound
        b = s.choose(split, want)
        if b == 0:
            s.cut(s.L, split)
            s.r = bound
            probs[i] = p + ((2048 - p) >> 5)
        else:
            s.cut(split, s.L + s.r)
            s.L = split
            s.r -= bound
            probs[i] = p - (p >> 5)
        return b

    def direct(s, want):
        s.norm()
        half = s.r >> 1
        split = s.L + half
        b = s.choose(split, want)
        if b == 0:
            s.cut(s.L, split)
        else:
            s.cut(split, split + half)
            s.L = split
        s.r = half
        return b


def tree(d, probs, nbits, want):
    m = 1
    for _ in range(nbits):
        m = (m << 1) + d.bit(probs, m, want)
    return m - (1 << nbits)


def rtree(d, probs, base, nbits, want):
    m = 1
    sym = 0
    for k in range(nbits):
        b = d.bit(probs, base + m, want)
        m = (m << 1) + b
        sym |= b << k
    return sym


class Len:
    def __init__(s):
        s.choice = [1024, 1024]
        s.low = [[1024] * 8 for _ in range(16)]
        s.mid = [[1024] * 8 for _ in range(16)]
        s.high = [1024] * 256

    def dec(s, d, ps, want):
        if d.bit(s.choice, 0, want) == 0:
            return tree(d, s.low[ps], 3, want)
        if d.bit(s.choice, 1, want) == 0:
            return 8 + tree(d, s.mid[ps], 3, want)
        return 16 + tree(d, s.high, 8, want)


def run(fixed, ntrain_bytes_end, max_out=1 << 22, dictsize=1 << 20, prefix=b"", target=None):
    """policy: while n < ntrain_bytes_end -> literals 0x00; afterwards -> EOPM."""
    d = Dec(fixed, None, None)
    lc, lp = 3, 0  # pb = 2: the position state is len(out) & 3
    ismatch = [1024] * (12 << 4)
    isrep = [1024] * 12
    g0 = [1024] * 12
    g1 = [1024] * 12
    g2 = [1024] * 12
    rep0long = [1024] * (12 << 4)
    lit = [1024] * (0x300 << (lc + lp))
    slot = [[1024] * 64 for _ in range(4)]
    posd = [1024] * 115
    align = [1024] * 16
    lenc, replenc = Len(), Len()
    state = 0
    reps = [0, 0, 0, 0]
    out = d.out
    while True:
        ending = d.n >= ntrain_bytes_end
        if len(out) > max_out:
            raise Fail("too much output")
        if target is not None and ending and len(out) > target:
            raise Fail(f"overshoot {len(out)}")
        if len(out) < len(prefix):
            wantb = prefix[len(out)]
        elif target is not None and ending and len(out) == target - 1:
            wantb = 0x2E
        else:
            wantb = 0
        stop_now = ending and (target is None or len(out) >= target)
        ps = len(out) & 3
        if d.bit(ismatch, (state << 4) + ps, 1 if stop_now else 0) == 0:
            prev = out[-1] if out else 0
            base = 0x300 * (prev >> (8 - lc))
            sym = 1
            if state >= 7:
                mb = out[-reps[0] - 1]
                while sym < 0x100:
                    mbit = (mb >> 7) & 1
                    mb = (mb << 1) & 0xFF
                    b = d.bit(
                        lit, base + ((1 + mbit) << 8) + sym, (wantb >> (8 - sym.bit_length())) & 1
                    )
                    sym = (sym << 1) | b
                    if mbit != b:
                        break
            while sym < 0x100:
                sym = (sym << 1) | d.bit(lit, base + sym, (wantb >> (8 - sym.bit_length())) & 1)
            out.append(sym - 0x100)
            state = 0 if state < 4 else (state - 3 if state < 10 else state - 6)
            continue
        if d.bit(isrep, state, 0) != 0:
            if not out:
                raise Fail("rep on empty")
            if d.bit(g0, state, 0) == 0:
                if d.bit(rep0long, (state << 4) + ps, 1) == 0:
                    state = 9 if state < 7 else 11
                    out.append(out[-reps[0] - 1])
                    continue
            else:
                if d.bit(g1, state, 0) == 0:
                    dist = reps[1]
                else:
                    if d.bit(g2, state, 0) == 0:
                        dist = reps[2]
                    else:
                        dist = reps[3]
                        reps[3] = reps[2]
                    reps[2] = reps[1]
                reps[1] = reps[0]
                reps[0] = dist
            ln = replenc.dec(d, ps, 0)
            state = 8 if state < 7 else 11
        else:
            reps[3], reps[2], reps[1] = reps[2], reps[1], reps[0]
            ln = lenc.dec(d, ps, 0)
            state = 7 if state < 7 else 10
            ls = min(ln, 3)
            s_ = tree(d, slot[ls], 6, 1)
            if s_ < 4:
                dist = s_
            else:
                nd = (s_ >> 1) - 1
                dist = (2 | (s_ & 1)) << nd
                if s_ < 14:
                    dist += rtree(d, posd, dist - s_ - 1, nd, 1)
                else:
                    x = 0
                    for _ in range(nd - 4):
                        x = (x << 1) | d.direct(1)
                    dist += x << 4
                    dist += rtree(d, align, 0, 4, 1)
            reps[0] = dist
            if dist == 0xFFFFFFFF:
                d.eopm = True
                return d
            if dist >= len(out) or dist >= dictsize:
                raise Fail(f"bad distance {dist}/{len(out)}")
        ln += 2
        for _ in range(ln):
            out.append(out[-reps[0] - 1])


def finish(d, final_norm):
    if final_norm:
        d.norm()
    # code == 0: V_n == L
    if not (d.A <= d.L < d.B):
        raise Fail("cannot end with code 0")
    v = d.L
    return v.to_bytes(d.n, "big")


def build(payload, L1=200, final_norm=True, prefix=b"", target=None):
    head = bytearray(b"]C" + bytes([L1]) + b"\x10\x00" + b"\xff" * 8)  # dict 0x00104 3C.. ~1 MiB
    assert len(head) == 13
    pay_off = 3 + L1 - 13  # payload offset within the compressed part
    fixed = {0: 0}
    for k, c in enumerate(payload):
        fixed[pay_off + k] = c
    d = run(fixed, pay_off + len(payload) + 0, prefix=prefix, target=target)
    body = finish(d, final_norm)
    if len(body) < pay_off + len(payload):
        raise Fail("stream ended before the payload")
    return bytes(head) + body, len(d.out)


def polyglot(payload: bytes) -> bytes:
    """A file liblzma inflates exactly to `BINBYTES(4000 - 6 zeros) STOP`, whose raw bytes
    read as a pickle reach `payload` (opcodes ending in STOP)."""
    for pad in range(8):
        for l1 in range(40, 256):
            body = b"N0" * pad + payload
            target = 4000
            f: bytes | None = None
            for _ in range(6):
                prefix = b"B" + struct.pack("<I", target - 6)
                try:
                    f, _ = build(body, l1, prefix=prefix, target=target)
                    break
                except Fail as e:
                    m = str(e)
                    if m.startswith("overshoot"):
                        target = int(m.split()[1]) + 3000
                        continue
                    f = None
                    break
            if f is None:
                continue
            dd = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
            try:
                out = dd.decompress(f)
            except lzma.LZMAError:
                continue
            if (
                dd.eof
                and not dd.unused_data
                and out[:5] == prefix
                and out[-1:] == b"."
                and len(out) == target
            ):
                return f
    raise Fail("no polyglot found")
