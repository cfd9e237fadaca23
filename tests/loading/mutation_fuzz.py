"""A seeded mutation fuzzer for the load and scan paths: only safeload errors ever come out.

Seeds are valid files of every format safeload loads (torch zip, legacy torch, safetensors, .npy,
.npz, joblib), built at run time. Each case applies one to three mutations (byte flips,
truncations, edits of length and offset fields, member duplication, chunk duplication) and then
runs `inspect_bytes` (must return a verdict, never raise) and `safeload.load` (must return or
raise a `SafeloadError`, never a raw KeyError, struct.error, ValueError, ...). A case that takes
longer than `hang_seconds` is a hang (SIGALRM). tests/loading/test_mutation_fuzz.py runs a few
hundred cases; benchmarks/fuzz_mutation.py runs the long campaign.
"""

from __future__ import annotations

import collections
import gzip
import io
import pickle
import random
import re
import signal
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def seeds(folder: Path) -> dict[str, bytes]:
    """One small valid file per format, each written by its own library."""
    import joblib
    import numpy as np
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = {"w": torch.randn(3, 4), "b": torch.arange(4, dtype=torch.int64), "meta": {"epoch": 2}}
    out: dict[str, bytes] = {}
    p = folder / "seed"
    torch.save(sd, p)
    out["torch-zip"] = p.read_bytes()
    torch.save(sd, p, _use_new_zipfile_serialization=False)
    out["torch-legacy"] = p.read_bytes()
    save_file({"w": sd["w"], "b": sd["b"]}, str(p))
    out["safetensors"] = p.read_bytes()
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(3, 4))
    out["npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(6, dtype=np.int16), b=np.ones((2, 2)))
    out["npz"] = buf.getvalue()
    joblib.dump({"alpha": 0.5, "names": ["a", "b"], "n": 3}, p)
    out["joblib"] = p.read_bytes()
    joblib.dump({"alpha": 0.5, "names": ["a", "b"]}, p, compress=("zlib", 3))
    out["joblib-zlib"] = p.read_bytes()
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(6, dtype=np.int16), c=np.zeros(3, dtype=np.complex64))
    out["npz-deflated"] = buf.getvalue()
    base = torch.arange(12, dtype=torch.float32)
    rich = collections.OrderedDict(
        t=base.view(3, 4)[:, 1:], shared=base[2:6], flags=torch.tensor([True, False]),
        half=torch.ones(2, dtype=torch.bfloat16), nested=[(1, "x"), {"k": 2.5}, None])
    torch.save(rich, p)
    out["torch-zip-rich"] = p.read_bytes()
    out["pickle-gzip"] = gzip.compress(pickle.dumps({"a": [1, 2.0, "three"], "b": (None,)}, 4))
    p.unlink()
    return out


_EDGE = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 62,
         (1 << 64) - 1)


def _fields(data: bytes) -> list[int]:
    """Offsets of structure worth editing: zip signatures, the safetensors and .npy length
    words, JSON numbers, pickle length-prefixed opcodes."""
    spots = [m.start() for m in re.finditer(rb"PK[\x01-\x08][\x02-\x08]", data)]
    spots += [0, 8] + [m.start() for m in re.finditer(rb"\d+", data[:4096])][:64]
    spots += [m.start() for m in re.finditer(rb"[XBTU\x8c\x8d\x8e\x95\x96]", data[:4096])][:64]
    return spots


def _edit_length(rng: random.Random, data: bytes) -> bytes:
    base = rng.choice(_fields(data))
    at = min(base + rng.randrange(0, 48), max(len(data) - 1, 0))
    width = rng.choice((1, 2, 4, 8))
    value = rng.choice(_EDGE + (len(data), len(data) - at, rng.randrange(1 << 16)))
    if re.match(rb"\d", data[at : at + 1]):  # a JSON/ASCII number: write digits
        digits = str(value).encode()
        end = at
        while end < len(data) and data[end : end + 1].isdigit():
            end += 1
        return data[:at] + digits + data[end:]
    raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return data[:at] + raw + data[at + width :]


def _flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] ^= rng.randrange(1, 256)
    return bytes(b)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _dup_chunk(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 256))
    k = rng.randrange(len(data) + 1)
    return data[:k] + data[i:j] + data[k:]


def _dup_member(rng: random.Random, data: bytes) -> bytes:
    """Re-zip with one member written twice (zipfile allows it; later duplicates win there)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            items = [(i, z.read(i)) for i in z.infolist()]
    except Exception:  # not a zip (any more): duplicate a chunk instead
        return _dup_chunk(rng, data)
    if not items:
        return _dup_chunk(rng, data)
    victim, donor = rng.choice(items), rng.choice(items)
    out = io.BytesIO()
    with _quiet(), zipfile.ZipFile(out, "w") as z:
        for info, body in items:
            z.writestr(info, body)
        z.writestr(victim[0].filename, donor[1] if rng.random() < 0.5 else victim[1])
    return out.getvalue()


def _in_member(rng: random.Random, data: bytes) -> bytes:
    """Mutate one member's bytes and re-zip with a correct CRC: the mutation reaches the pickle,
    .npy or storage parsers instead of stopping at the archive's checksum."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            items = [(i, z.read(i)) for i in z.infolist()]
    except Exception:
        return _flip(rng, data)
    if not items:
        return _flip(rng, data)
    pick = rng.randrange(len(items))
    info, body = items[pick]
    if body:
        inner = rng.choice((_flip, _truncate, _edit_length, _dup_chunk))
        items[pick] = (info, inner(rng, body))
    out = io.BytesIO()
    with _quiet(), zipfile.ZipFile(out, "w") as z:
        for i, b in items:
            z.writestr(i, b)
    return out.getvalue()


@contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flip": _flip, "truncate": _truncate, "length": _edit_length, "dup-chunk": _dup_chunk,
    "dup-member": _dup_member, "in-member": _in_member,
}
# In-member edits reach the parsers behind the archive checksum: drawn most often.
_WEIGHTS = {"flip": 2, "truncate": 1, "length": 2, "dup-chunk": 1, "dup-member": 1,
            "in-member": 4}


class Hang(Exception):
    pass


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def _raise(*_: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Stats:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    escapes: list[str] = field(default_factory=list)  # "seed/mutations: traceback"

    def __str__(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(8))
        return f"{self.cases} cases, {len(self.escapes)} escapes; outcomes: {top}"


def fuzz(count: int, folder: Path, *, seed: int = 0, hang_seconds: int = 60,
         load: bool = True) -> Stats:
    import safeload
    from safeload.errors import SafeloadError
    from safeload.inspection import inspect_bytes

    rng = random.Random(seed)
    base = seeds(folder)
    names = sorted(base)
    stats = Stats()
    for case in range(count):
        kind = names[case % len(names)]
        data = base[kind]
        applied = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            m = rng.choices(sorted(MUTATIONS), [_WEIGHTS[k] for k in sorted(MUTATIONS)])[0]
            data = MUTATIONS[m](rng, data) if data else data
            applied.append(m)
        label = f"{kind}/{'+'.join(applied)}#{case}"
        path = folder / f"case{case % 8}.bin"
        path.write_bytes(data)
        stats.cases += 1
        try:
            with _alarm(hang_seconds), _quiet():
                ins = inspect_bytes(data, name=path.name)
                if load:
                    # By path, mapped, and as bytes without a file (guard() and BytesIO):
                    # each its own route through the pipeline.
                    how = case % 3
                    if how == 0:
                        safeload.load(path)
                    elif how == 1:
                        safeload.load(str(path), map_location="cpu", mmap=True)
                    else:
                        safeload.load(io.BytesIO(data))
            stats.outcomes[f"loaded ({ins.verdict})"] += 1
        except SafeloadError as exc:
            stats.outcomes[type(exc).__name__] += 1
        except Exception:
            stats.escapes.append(f"{label}: {traceback.format_exc(limit=6)}")
            stats.outcomes["ESCAPE"] += 1
    return stats


__all__ = ["MUTATIONS", "Hang", "Stats", "fuzz", "seeds"]
