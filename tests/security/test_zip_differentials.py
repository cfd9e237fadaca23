"""Zip parser differentials: archives that miniz (torch.load) or zipfile read differently than
safeload's strict reader must never scan clean.

Each family's generator builds several variants; each variant's control shows a real reader
(torch.load weights_only=False, or zipfile+pickle of the named member) runs the payload, then
`safeload.load` refuses and `safeload scan` exits 1 with the marker untouched. The seeded fuzz
test mutates real torch.save archives and checks the invariant: a clean verdict implies that
zipfile and torch.load(weights_only=True) read exactly the bytes safeload inspected.
"""

from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from canary_lib import ZIP_MEMBER_LOADER, Fires, Reduce, Refused, ZEntry, build_zip, torch_archives
from safeload_conversion.zipstrict import ZipError, read_member, read_zip

from safeload.errors import UnsafeCheckpointError
from safeload.inspection import inspect_bytes


def _variants(good: list[tuple[str, bytes]], evil: list[tuple[str, bytes]],
              payload: bytes) -> list[tuple[str, bytes, str]]:
    """(id, archive, member a zipfile+pickle loader reads; '' = torch.load fires)."""
    g = [ZEntry(n, d) for n, d in good]
    out: list[tuple[str, bytes, str]] = []
    for alias in ("archive/Data.pkl", "archive/DATA.PKL", "archive/data.pkl/"):
        out.append((f"alias-{alias}", build_zip([*g, ZEntry(alias, payload)]), alias))
    for key in ("99", "0x", "Evil"):
        out.append((f"unreferenced-{key}", build_zip([*g, ZEntry(f"archive/data/{key}",
                                                                 payload)]), f"archive/data/{key}"))
    clean = build_zip(g)
    for pad in (0, 7):
        # The comment holds a whole evil archive: its end record is the last one in the file.
        head = clean[:-2]
        start = len(head) + 2 + pad
        inner = build_zip([ZEntry(n, d) for n, d in evil], base=start)
        comment = b"\0" * pad + inner
        out.append((f"comment-archive-{pad}", head + struct.pack("<H", len(comment)) + comment,
                    ""))
    return out


def test_zip_differential_variants_are_refused(tmp_path: Path, marker: Path, fires: Fires,
                                               refused: Refused) -> None:
    good, evil = torch_archives(tmp_path, marker)
    payload = pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)
    for vid, blob, member in _variants(good, evil, payload):
        path = tmp_path / f"v-{len(vid)}-{abs(hash(vid))}.pt"
        path.write_bytes(blob)
        if member:
            assert fires(path, ZIP_MEMBER_LOADER, args=(member,)), vid
        else:
            assert fires(path, "torch"), vid
        _, report = refused(path, UnsafeCheckpointError, match="differential")
        assert any(f["code"] == "differential" for f in report["findings"]), (vid, report)


def _torch_bytes(obj: object) -> bytes:
    bio = io.BytesIO()
    torch.save(obj, bio)
    return bio.getvalue()


@pytest.mark.parametrize("obj", [
    {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.int64)},
    {"shared": (lambda t: {"a": t, "v": t[1:]})(torch.ones(4))},
    {}, [torch.tensor([1.5])],
], ids=["state_dict", "shared_storage", "empty", "list"])
def test_real_torch_save_archives_are_not_differentials(obj: object) -> None:
    blob = _torch_bytes(obj)
    names = {m.name.split("/", 1)[1] for m in read_zip(blob)}
    assert ".data/serialization_id" in names and "byteorder" in names
    ins = inspect_bytes(blob)
    assert ins.verdict == "clean", ins.findings


def _strict_reading(blob: bytes) -> dict[str, bytes] | None:
    try:
        return {m.name: bytes(read_member(blob, m, limit=1 << 24)) for m in read_zip(blob)}
    except ZipError:
        return None


def _zipfile_reading(blob: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            return {n: z.read(n) for n in z.namelist()}
    except Exception:
        return None


def _torch_reading(blob: bytes) -> dict[str, bytes] | None:
    try:
        sd = torch.load(io.BytesIO(blob), weights_only=True)
        return {k: v.numpy().tobytes() for k, v in sd.items()}
    except Exception:
        return None


def _rename_case(blob: bytes, rng: random.Random) -> bytes:
    names = [m.name for m in read_zip(blob)]
    name = rng.choice(names).encode()
    flipped = name.swapcase() if rng.random() < 0.5 else name.upper()
    return blob.replace(name, flipped, rng.choice([1, 2]))


def _mutate(base: bytes, evil: bytes, rng: random.Random) -> bytes:
    op = rng.randrange(5)
    if op == 0:
        return _rename_case(base, rng)
    if op == 1:  # evil archive hidden in the comment
        pad = rng.randrange(4)
        inner_start = len(base) + pad
        comment = b"\0" * pad + _rebase(evil, inner_start)
        return base[:-2] + struct.pack("<H", len(comment) & 0xFFFF) + comment
    if op == 2:
        return base + evil if rng.random() < 0.5 else evil + base
    if op == 3:  # retarget the zip64 locator
        loc = base.rfind(b"PK\x06\x07")
        if loc < 0:
            return base
        delta = rng.choice([-8, -4, 4, 8])
        (off,) = struct.unpack_from("<Q", base, loc + 8)
        return base[:loc + 8] + struct.pack("<Q", max(0, off + delta)) + base[loc + 16:]
    # duplicate data.pkl with a case change, evil content
    ev = {m.name: bytes(read_member(evil, m, limit=1 << 24)) for m in read_zip(evil)}
    bv = {m.name: bytes(read_member(base, m, limit=1 << 24)) for m in read_zip(base)}
    ents = [ZEntry(n, d) for n, d in bv.items()]
    dup = rng.choice(["archive/Data.pkl", "archive/data.PKL", "ARCHIVE/data.pkl"])
    ents.insert(rng.randrange(len(ents) + 1), ZEntry(dup, ev["archive/data.pkl"]))
    return build_zip(ents)


def _rebase(blob: bytes, base: int) -> bytes:
    members = [(m.name, bytes(read_member(blob, m, limit=1 << 24))) for m in read_zip(blob)]
    return build_zip([ZEntry(n, d) for n, d in members], base=base)


def fuzz(count: int, seed: int = 0) -> dict[str, int]:
    """Run `count` mutations; raise AssertionError on a clean verdict with a differing read."""
    rng = random.Random(seed)
    base = build_zip([ZEntry("archive/" + n.split("/", 1)[1], d) for n, d in
                      _members(_torch_bytes({"w": torch.arange(4.0)}))])
    evil = build_zip([ZEntry("archive/" + n.split("/", 1)[1], d) for n, d in
                      _members(_torch_bytes({"w": torch.full((4,), 7.0)}))])
    stats = {"cases": 0, "clean": 0, "refused": 0}
    for _ in range(count):
        blob = _mutate(base, evil, rng)
        stats["cases"] += 1
        if inspect_bytes(blob).verdict != "clean":
            stats["refused"] += 1
            continue
        stats["clean"] += 1
        strict = _strict_reading(blob)
        assert strict is not None and _zipfile_reading(blob) == strict, "zipfile differs"
        ref = _torch_reading(_plain(strict))
        assert _torch_reading(blob) in (None, ref), "torch.load differs"
    return stats


def _members(blob: bytes) -> list[tuple[str, bytes]]:
    return [(m.name, bytes(read_member(blob, m, limit=1 << 24))) for m in read_zip(blob)]


def _plain(members: dict[str, bytes]) -> bytes:
    return build_zip([ZEntry(n, d) for n, d in members.items()])


def test_fuzzed_torch_zips_clean_only_when_every_reader_agrees() -> None:
    stats = fuzz(300, seed=9)
    assert stats["refused"] > 0 and stats["cases"] == 300


def _payload_zip(marker: Path, base: int = 0) -> bytes:
    """A torch-like archive whose data.pkl runs the payload (offsets from its own start, or
    absolute when `base` is where it will lie in the file)."""
    return build_zip([ZEntry("archive/data.pkl",
                             pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)),
                      ZEntry("archive/version", b"3\n")], base=base)


@pytest.mark.parametrize("host", ["pickle-bytes", "safetensors-tensor", "unknown"])
@pytest.mark.parametrize("offsets", ["relative", "absolute"])
def test_a_zip_at_the_end_of_a_file_that_is_no_zip_is_refused(
        host: str, offsets: str, tmp_path: Path, marker: Path, fires: Fires,
        refused: Refused) -> None:
    # Review M (M-1): zipfile reads an archive whatever precedes it (miniz too, at absolute
    # offsets: torch.package, torch.jit.load); safeload took a file for a zip only when it
    # began `PK\x03\x04`, so an archive inside a pickle's bytes, a tensor or unknown bytes
    # passed `safeload scan`.
    from safetensors.torch import save

    def build(prefix_len: int) -> bytes:
        archive = _payload_zip(marker, base=prefix_len if offsets == "absolute" else 0)
        if host == "pickle-bytes":
            # protocol 4: PROTO, FRAME, BINBYTES8 header, then the archive, then STOP
            return pickle.dumps(archive, protocol=4)
        if host == "safetensors-tensor":
            return save({"blob": torch.frombuffer(bytearray(archive), dtype=torch.uint8)})
        return b"\0" * 64 + archive

    blob = build(0)
    prefix = blob.index(b"PK\x03\x04")  # where the archive lands, to fix absolute offsets
    blob = build(prefix) if offsets == "absolute" else blob
    path = tmp_path / "m.bin"
    path.write_bytes(blob)
    assert fires(path, ZIP_MEMBER_LOADER, args=("archive/data.pkl",))
    refused(path, UnsafeCheckpointError, match="also reads this .* file as an archive")


def test_bytes_that_only_mention_the_end_record_are_not_an_archive() -> None:
    # The signature alone (tensor data, a comment) is not an archive: no member is found.
    blob = pickle.dumps({"note": b"PK\x05\x06" + b"\0" * 18, "n": 1}, protocol=4)
    assert inspect_bytes(blob, name="m.pkl").verdict == "clean"
