"""Regressions: one test per published scanner bypass (picklescan, modelscan, fickling) that the
canary families do not already cover by name, then the bypasses and crashes found in safeload
itself while writing these tests.

THE SECOND HALF FAILS until the bugs are fixed: each test there names the bug, the faulty code
and the fix in its comment. Every hostile file is generated at test time.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from canary_lib import (
    Fires,
    Reduce,
    Refused,
    ZEntry,
    build_zip,
    call,
    g,
    lit,
    open_code,
    opener,
    p4,
    safetensors_pickle_polyglot,
    scan_json,
    tampered_zip,
    text_open,
    torch_archives,
    v7_tar,
)

import safeload
from safeload._cli import main
from safeload.errors import SafeloadError, UnsafeCheckpointError

OPEN_RE = r"(io|builtins)\.open"


def _touch(m: Path) -> str:
    return f"touch {shlex.quote(str(m))}"


# ==========================================================================================
# Part 1: published bypasses (all must be refused; these pass today)


REGRESSIONS = {
    # modelscan PR#346: mailcap.findmatch runs a mailcap entry's `test` command.
    "modelscan-pr346-mailcap.findmatch": (
        lambda m: p4(call(g("mailcap", "findmatch"),
                          {"text/plain": [{"view": "true", "test": _touch(m)}]}, "text/plain")),
        r"mailcap\.findmatch"),
    # CVE-2026-56315 (picklescan < 1.0.4): stdlib helpers that run commands.
    "CVE-2026-56315-imaplib.IMAP4_stream": (
        lambda m: p4(call(g("imaplib", "IMAP4_stream"), _touch(m))), r"imaplib\.IMAP4_stream"),
    "CVE-2026-56315-_osx_support._read_output": (
        lambda m: p4(call(g("_osx_support", "_read_output"), _touch(m))),
        r"_osx_support\._read_output"),
    # GHSA-vqmv-47xg-9wpr: ensurepip._run_pip runs pip (here: writes its log).
    "GHSA-vqmv-47xg-9wpr-ensurepip._run_pip": (
        lambda m: p4(call(g("ensurepip", "_run_pip"),
                          ["--log", str(m), "--disable-pip-version-check", "list"])),
        r"ensurepip\._run_pip"),
    # GHSA-46h3-79wf-xr6c: trace.Trace.runctx execs.
    "GHSA-46h3-79wf-xr6c-trace.Trace.runctx": (
        lambda m: p4(call(g("trace", "Trace.runctx"), call(g("trace", "Trace")), open_code(m))),
        r"trace\.Trace"),
    # fickling PR#108: pty.spawn through OBJ in a protocol-0 text pickle.
    "fickling-pr108-pty.spawn": (
        lambda m: b"(cpty\nspawn\n(S'touch'\nS'" + str(m).encode() + b"'\nlo.", r"pty\.spawn"),
    # picklescan#22 (ImaginaryCTF "Safe Pickle"): memo PUT out of order + GET + STACK_GLOBAL.
    "picklescan-issue22-memo-get": (
        lambda m: (b"Vbuiltins\np2\n0Vopen\np3\n0Vtorch\np0\n0VLongStorage\np1\n0"
                   b"g2\ng3\n\x93(V" + str(m).encode() + b"\nVw\ntR."), r"builtins\.open"),
    # picklescan PR#52: STACK_GLOBAL with memo values of the wrong type crashed the scanner.
    "picklescan-pr52-stack-global-type-confusion": (
        lambda m: b"\x80\x04" + lit(1) + lit(2) + b"\x93" + b"0" + opener(m).b + b".",
        r"STACK_GLOBAL"),
    # GHSA-9gvj-pp9x-gcfr (arXiv:2508.19774 "EOP"): an exception after the payload.
    "GHSA-9gvj-pp9x-gcfr-exception-after-payload": (
        lambda m: p4(opener(m))[:-1] + b"0" + lit(g("builtins", "int")) + lit(("x",)) + b"R.",
        r"builtins\.(open|int)"),
}


@pytest.mark.parametrize("advisory", sorted(REGRESSIONS))
def test_published_bypass_is_refused(advisory: str, tmp_path: Path, marker: Path, fires: Fires,
                                     refused: Refused) -> None:
    build, match = REGRESSIONS[advisory]
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(build(marker))
    if "stack-global-type" in advisory:
        # pickle itself stops at the bad STACK_GLOBAL (no control): the point is that the
        # scanner reports it instead of crashing, as picklescan did
        refused(path, UnsafeCheckpointError, match=match)
        return
    assert fires(path, "pickle", timeout=60, wait=5.0), f"control: {advisory} did not fire"
    refused(path, UnsafeCheckpointError, match=match)


ZIP_ADVISORIES = {
    # picklescan CVE-2025-1944 / GHSA-7q5r-7gvp-wc82: local vs central file name.
    "CVE-2025-1944-name-mismatch": "local_central_name_mismatch",
    # picklescan CVE-2025-10156 (JFrog): bad CRC that torch ignores.
    "CVE-2025-10156-bad-crc": "bad_crc",
    # picklescan CVE-2025-1945 / GHSA-w8jq-xcqf-f792: flag bits torch ignores.
    "CVE-2025-1945-flag-bits": "encrypted_flag_local_only",
    # modelscan#354/PR#355: an unreadable entry before data.pkl aborted the scan.
    "modelscan-354-corrupt-entry-first": "corrupt_entry_before_data_pkl",
    # modelaudit PR#1043: a hidden extra pickle next to data.pkl.
    "modelaudit-pr1043-hidden-pickle-member": "extra_pkl_member",
}


@pytest.mark.parametrize("advisory", sorted(ZIP_ADVISORIES))
def test_published_zip_bypass_is_refused(advisory: str, tmp_path: Path, marker: Path,
                                         refused: Refused) -> None:
    # (controls for these archives are in test_canary_families.py::test_zip_header_tampering)
    good, evil = torch_archives(tmp_path, marker)
    blob, _ = tampered_zip(ZIP_ADVISORIES[advisory], good, evil, marker)
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(blob)
    refused(path, UnsafeCheckpointError)


@pytest.mark.parametrize("ext", [".bin", ".pt", ".pth", ".ckpt", ".data", ""])
def test_CVE_2025_10155_and_CVE_2025_1889_extension_does_not_matter(
        ext: str, tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A plain (non-zip) pickle named like a torch file: a scanner that picks its parser by
    # extension failed and reported nothing.
    path = tmp_path / f"model{ext}"
    path.write_bytes(pickle.dumps(Reduce(open, str(marker), "w")))
    rc, out = scan_json(main, path, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe"
    assert not marker.exists()


# ==========================================================================================
# Part 2: bugs found in safeload. These tests FAIL until fixed.


# ------------------------------------------------------------------------------------------
# BUG 1 (critical, scan bypass): in safeload/inspection.py::_inspect_pickle, a pickle that the
# symbolic machine rejects as malformed *before its first import* is reported "skipped" ("not
# a pickle", exit 0, ok: true) when it does not start with PROTO (0x80). The machine is
# stricter than CPython in several places (and must stay so), so a working payload can be made
# to look like garbage: CPython keeps reading where the machine stops, and runs the payload.
# Original triggers: POP of an empty MARK segment, INT/LONG literals in base 0 ("0x1", "1_0":
# C uses strtol/PyLong_FromString with base 0), FRAME boundaries (C does not enforce them),
# UTF-8 8-bit strings (torch.load passes encoding="utf-8").
# Status: the working tree's fix (inspection.py::would_import, a lenient framing walk) closes
# the original triggers and the first version's 1 MiB cut-off (now fail-closed past 64 MiB),
# but is still bypassable: it gives up (returns None -> "skipped") on a text argument longer
# than 64 KiB, which CPython reads whatever its length.
# Fix: in would_import, a missing newline within the window must not mean "no import": search
# to the end of the buffer (or answer "undecided" = unsafe, as past `limit`). Simpler and
# sturdier: never return "skipped" for a stream whose first opcode parses.


def _evasions(m: Path) -> dict[str, tuple[bytes, str]]:
    call0 = text_open(m) + b"."
    return {
        "pop_of_empty_mark_segment": (b"(0" + call0, "pickle"),
        "INT_hex_literal": (b"I0x1\n0" + call0, "pickle"),
        "INT_underscore_literal": (b"I1_0\n0" + call0, "pickle"),
        "LONG_hex_literal": (b"L0x1L\n0" + call0, "pickle"),
        "FRAME_straddled_by_an_opcode": (b"\x95" + struct.pack("<Q", 2) + b"I1\n0" + call0,
                                         "pickle"),
        "utf8_8bit_string_under_torch_load": (b"U\x02\xc3\xa90" + call0, "torch"),
        "text_argument_longer_than_64KiB": (b"V" + b"A" * 70000 + b"\n0" + call0, "pickle"),
        "import_after_the_first_MiB": (b"I0x1\n0B" + struct.pack("<I", 2 << 20)
                                       + b"\0" * (2 << 20) + b"0" + call0, "pickle"),
    }


@pytest.mark.parametrize("how", sorted(_evasions(Path("x"))))
def test_BUG_vm_strictness_makes_working_payload_skipped(how: str, tmp_path: Path,
                                                         marker: Path, fires: Fires,
                                                         refused: Refused) -> None:
    blob, loader = _evasions(marker)[how]
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(blob)
    assert fires(path, loader), f"control: {how} did not fire under {loader}"
    refused(path, UnsafeCheckpointError, match=OPEN_RE + "|reaches an import")


def test_BUG_ext_opcode_without_proto_then_garbage_is_skipped(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Same function: EXT* imports did not go into `globals_seen`, so the "no import was
    # reached" test passed although the stream already had a global-not-allowed finding.
    # (Fixed in the working tree by would_import, which counts EXT* as imports.)
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x82\x7f" + lit((str(marker), "w")) + b"R\xff")
    assert fires(path, "pickle", setup="import copyreg\ncopyreg.add_extension('builtins', "
                                        "'open', 0x7f)")
    refused(path, UnsafeCheckpointError, match=r"extension-registry")


def test_BUG_global_with_unresolvable_name_still_imports_its_module(tmp_path: Path,
                                                                   marker: Path, fires: Fires,
                                                                   refused: Refused) -> None:
    # pickle imports the GLOBAL's module before it looks the name up; the machine raises
    # "not a dotted identifier" first (pickle_vm.py::_text_global) and, without PROTO, the file
    # is "skipped". Import-time side effects of any importable module run (here a module that
    # sits on sys.path, as in a repository checkout the victim runs from).
    # (Fixed in the working tree: _text_global now treats any text as an import attempt.)
    src = tmp_path / "src"
    src.mkdir()
    mod = f"sideeffect_{os.getpid()}"
    (src / f"{mod}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    path = tmp_path / "model.pt"
    path.write_bytes(b"c" + mod.encode() + b"\n-\n.")
    assert fires(path, "pickle", sys_path=[str(src)])
    refused(path, UnsafeCheckpointError, match=mod)


# ------------------------------------------------------------------------------------------
# BUG 2 (high, scan says "clean"): a file that is a valid safetensors file AND a valid pickle.
# safeload/inspection.py::sniff tries safetensors first and never looks at the bytes as a
# pickle, but pickle.load and torch.load(weights_only=False) on a *.bin/*.pt name unpickle it
# from byte 0 (torch only dispatches *.safetensors by name). The payload fires.
# Fix: when the first byte is also a pickle opcode, run the pickle machine over the file too;
# refuse if it parses to STOP (or reaches any import) – a real safetensors header length never
# needs to form a pickle (e.g. require byte 0 not in the pickle opcode set, or parse both).


def test_BUG_safetensors_pickle_polyglot_scans_clean(tmp_path: Path, marker: Path, fires: Fires,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    ops = lit(g("builtins", "open")) + lit((str(marker), "w")) + b"R."
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(safetensors_pickle_polyglot(ops))
    assert list(load_file(str(path))) == ["t"]  # a genuine safetensors file
    assert fires(path, "pickle")
    assert fires(path, "torch")
    rc, out = scan_json(main, path, capsys)
    assert not marker.exists()
    assert out["files"][0]["status"] != "clean" and rc == 1, out


# ------------------------------------------------------------------------------------------
# BUG 3 (high, scan says "clean" / "skipped"): legacy tar-format torch checkpoints are only
# recognised by the "ustar" magic (inspection.py::sniff), but tarfile (and so torch.load's
# legacy path, which tries tar first) also reads old V7 headers that have no magic. A V7 tar
# whose first member name hides BINBYTES8 is at the same time a *clean* pickle (one bytes
# object spanning the file, then STOP); torch.load(weights_only=False) unpickles its
# 'storages' member. Fix: detect tar by a valid header checksum (tarfile's own test:
# tarfile.TarInfo.frombuf on the first 512 bytes), not by the magic.


def test_BUG_v7_tar_pickle_polyglot_scans_clean(tmp_path: Path, marker: Path, fires: Fires,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from canary_lib import tar_pickle_polyglot

    path = tmp_path / "old_checkpoint.pt"
    path.write_bytes(tar_pickle_polyglot(pickle.dumps(Reduce(open, str(marker), "w"))))
    assert isinstance(pickle.loads(path.read_bytes()), bytes)
    assert fires(path, "torch")
    rc, out = scan_json(main, path, capsys)
    assert not marker.exists()
    assert out["files"][0]["status"] == "unsafe" and rc == 1, out


def test_BUG_v7_tar_checkpoint_is_skipped(tmp_path: Path, marker: Path, fires: Fires,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old_checkpoint.pt"
    members = [("storages", pickle.dumps(Reduce(open, str(marker), "w"))), ("tensors", b""),
               ("pickle", b"")]
    path.write_bytes(v7_tar(members))
    assert fires(path, "torch")
    rc, out = scan_json(main, path, capsys)
    assert out["files"][0]["status"] == "unsafe" and rc == 1, out


# ------------------------------------------------------------------------------------------
# BUG 4 (high, scan says "skipped"): joblib's "lzma" compression writes the LZMA-alone format
# (magic 5d 00 00), which inspection.py::sniff does not know: 0x5d is EMPTY_LIST, the machine
# fails on the next byte, and the file is "skipped". joblib.load decompresses and unpickles.
# Fix: sniff b"\x5d\x00\x00" (lzma.FORMAT_ALONE) and unwrap it like xz.


def test_BUG_joblib_lzma_alone_is_skipped(tmp_path: Path, marker: Path, fires: Fires,
                                          refused: Refused) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(Reduce(open, str(marker), "w"), path, compress=("lzma", 3))
    assert path.read_bytes()[:3] == b"\x5d\x00\x00"
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=OPEN_RE)


def test_BUG_joblib_legacy_zfile_is_skipped(tmp_path: Path, marker: Path, fires: Fires,
                                           refused: Refused) -> None:
    # joblib < 0.10 wrote b"ZF" + hex length + zlib stream; joblib.load still reads it
    # (numpy_pickle_compat.read_zfile). 'Z' is no pickle opcode: sniff says "unknown", skipped.
    # Fix: sniff b"ZF0x" and unwrap it like zlib.
    import zlib

    payload = pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)
    path = tmp_path / "model.pkl"
    path.write_bytes(b"ZF" + hex(len(payload)).ljust(19).encode() + zlib.compress(payload))
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=OPEN_RE)


# ------------------------------------------------------------------------------------------
# BUG 8 (critical, scan says "clean"; parser differential): the allowlisted
# joblib.numpy_pickle.NumpyArrayWrapper makes the machine skip the array's bytes after BUILD
# (pickle_vm.py::_build_joblib_array), because joblib's own unpickler reads them as raw data.
# Every other loader of the same file (pickle.load, torch.load, numpy.load(allow_pickle=True))
# reads those bytes as OPCODES and runs them. The rule also applies inside a torch zip's
# data.pkl, which only torch reads. So a "clean" joblib pickle, or a "clean" torch zip, runs
# any payload placed in the array bytes.
# Fix: honour the raw read only for files that only joblib would load, and then ALSO inspect
# the stream as a plain pickle (BUILD = __dict__ update, the next bytes are opcodes) and
# require both readings to be clean or to fail before any import; never allow the rule in a
# torch zip member or legacy torch stream. (Separately: inside a torch zip the array span
# is recorded relative to the member but used as a file offset, so load returns the wrong
# bytes.)


def _joblib_hidden_opcodes(marker: Path) -> bytes:
    hidden = b"0" + text_open(marker)  # POP the wrapper, then open(marker, "w")
    dtype = (b"cnumpy\ndtype\n" + lit(("u1", False, True)) + b"R"
             + lit((3, "|", None, None, None, -1, -1, 0)) + b"b")
    state = (b"}(" + lit("subclass") + b"cnumpy\nndarray\n" + lit("shape")
             + lit((len(hidden),)) + lit("order") + lit("C") + lit("dtype") + dtype
             + lit("allow_mmap") + lit(False) + b"u")
    return (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b" + hidden
            + b".")


@pytest.mark.parametrize("container", ["plain_pickle", "torch_zip"])
def test_BUG_joblib_array_bytes_hide_opcodes(
        container: str, tmp_path: Path, marker: Path, fires: Fires, capsys:
        pytest.CaptureFixture[str]) -> None:
    blob = _joblib_hidden_opcodes(marker)
    if container == "torch_zip":
        blob = build_zip([ZEntry("archive/data.pkl", blob), ZEntry("archive/version", b"3\n"),
                          ZEntry("archive/byteorder", b"little")])
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(blob)
    if container == "plain_pickle":
        assert fires(path, "pickle")
        assert not fires(path, "joblib")  # joblib reads the same bytes as array data
    assert fires(path, "torch")
    rc, out = scan_json(main, path, capsys)
    assert not marker.exists()
    assert out["files"][0]["status"] == "unsafe" and rc == 1, out


# ------------------------------------------------------------------------------------------
# BUG 5 (medium, crashes): inputs that make load/scan raise something that is not a
# SafeloadError. Each case names the function at fault.


def _npy(header: str, data: bytes = b"", version: bytes = b"\x01\x00") -> bytes:
    h = header.encode("latin-1")
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(h)) + h + data


def _npy_bytes(arr: object) -> bytes:
    import numpy as np

    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _npz(members: dict[str, bytes]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return b.getvalue()


def _crashers() -> dict[str, tuple[str, bytes]]:
    import gzip

    import numpy as np

    f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
    ok = _npy_bytes(np.arange(3))
    zver = bytearray(_npz({"a.npy": ok}))
    zver[4:6] = struct.pack("<H", 70)  # "version needed to extract" 7.0 in the local header
    cen = zver.rfind(b"PK\x01\x02")
    zver[cen + 6:cen + 8] = struct.pack("<H", 70)
    return {
        # inspection.py::_inspect_npy: struct.unpack_from on a 9-byte file -> struct.error,
        # which inspect_bytes did not catch; `safeload scan` died with a traceback. (Fixed in
        # the working tree.)
        "truncated_npy_header": ("x.npy", b"\x93NUMPY\x01\x00\x10"),
        # _inspect_npy checks the major version only; numpy refuses (1, 43): ValueError.
        "npy_minor_version": ("x.npy", _npy(f4, b"\0" * 8, version=b"\x01\x2b")),
        # _NPY_HEADER's \s* also matches \x1c-\x1f and \xa0; numpy's parser does not.
        "npy_header_odd_whitespace": ("x.npy", _npy(f4 + "\x1f", b"\0" * 8)),
        # numpy refuses headers over max_header_size (10000); safeload allows 65536.
        "npy_long_header": ("x.npy", _npy(f4 + " " * 20000, b"\0" * 8)),
        # a zero-size array with a dimension past C long: OverflowError in numpy.
        "npy_huge_dimension": ("x.npy", _npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 100000000000000000000), }")),
        # big-endian data loads in numpy, torch.from_numpy raised ValueError
        # (safeload/_internal/tensors.py::load_numpy_buffer; fixed in the working tree).
        "npy_big_endian": ("x.npy", _npy_bytes(np.arange(3, dtype=">f4"))),
        # .npz members that are not .npy files: inspection calls them clean/skipped
        # (`_inspect_members` with nested_ok) but np.load returns their raw bytes and
        # torch.from_numpy raises TypeError. Fix: every npz member must be a clean .npy.
        "npz_text_member": ("x.npz", _npz({"a.npy": ok, "b.npy": b"hello world"})),
        "npz_gzip_member": ("x.npz", _npz({"a.npy": gzip.compress(ok)})),
        "npz_nested_npz": ("x.npz", _npz({"a.npy": _npz({"b.npy": ok})})),
        # zipstrict ignores "version needed to extract"; Python's zipfile (np.load) raises
        # NotImplementedError for versions above 6.3.
        "npz_zip_version_field": ("x.npz", bytes(zver)),
        # pickle_vm.py::_rule_torch_device accepts any short string; the parent's
        # structure.py rebuild calls torch.device() on it: RuntimeError escapes.
        "torch_device_bad_type": ("x.pt", p4(call(g("torch", "device"), "nonsense_device"))),
    }


@pytest.mark.parametrize("case", sorted(_crashers()))
def test_BUG_load_and_scan_raise_only_safeload_errors(case: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    name, blob = _crashers()[case]
    path = tmp_path / name
    path.write_bytes(blob)
    try:
        safeload.load(path)
    except SafeloadError:
        pass
    except Exception as exc:  # noqa: BLE001 - this is the bug being tested
        pytest.fail(f"safeload.load raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    try:
        rc, _ = scan_json(main, path, capsys)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"safeload scan raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    assert rc in (0, 1)


# ------------------------------------------------------------------------------------------
# BUG 6 (medium, denial of service): .npz members are inspected with `nested_ok=True` and no
# depth bound (inspection.py::_inspect_zip -> _inspect_members), so an npz whose members are
# npz files, each holding the same members again, is walked exponentially. 8 members x 7
# levels is a 10 KB file and ~70 s of scanning (x8 per extra level, ~10 min at 8 levels); the
# verdict at the end is "clean" although np.load cannot read it (see npz_nested_npz above).
# Fix: npz members must each be a .npy (magic checked), never another archive.


def _nested_npz(levels: int, width: int) -> bytes:
    import numpy as np

    level = _npy_bytes(np.zeros(1, dtype="<f4"))
    for _ in range(levels):
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(width):
                z.writestr(f"m{i}.npy", level)
        level = b.getvalue()
    return level


def _run_bounded(args: list[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return None


def test_BUG_nested_npz_scan_is_exponential(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(_nested_npz(7, 8))
    assert path.stat().st_size < 16 << 10
    done = _run_bounded([sys.executable, "-m", "safeload", "scan", str(path), "--json"], 8)
    assert done is not None, "scan of a 10 KB npz did not finish in 8 s"
    assert json.loads(done.stdout)["files"][0]["status"] == "unsafe"


# BUG 7 (medium, denial of service in the converter): conversion/plan.py::_Planner.encode
# dedupes lists/dicts/sets by identity but re-encodes tuples by value, so 40 memoised nested
# pairs (t[i+1] = (t[i], t[i])) -- a 290-byte pickle the inspector calls clean -- make the
# sandboxed worker walk 5,000,000 nodes before giving up (~55 s; torch.load takes 0.1 ms).
# Fix: give tuples references too (or count nodes per distinct object), and lower MAX_NODES
# (or bound the expanded size in the machine before conversion starts).


def test_BUG_tuple_dag_makes_conversion_crawl(tmp_path: Path) -> None:
    ops = bytearray(b"\x80\x02K\x01\x85q\x000")
    for i in range(1, 40):
        ops += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    ops += b"h\x27."
    path = tmp_path / "tuples.pkl"
    path.write_bytes(bytes(ops))
    code = textwrap.dedent(f"""
        import safeload
        try:
            safeload.load({str(path)!r})
        except Exception as e:
            print(type(e).__name__)
    """)
    done = _run_bounded([sys.executable, "-c", code], 10)
    assert done is not None, "safeload.load of a 290-byte pickle did not finish in 10 s"


def test_a_structure_record_in_a_downloaded_safetensors_file_is_ignored(tmp_path: Path) -> None:
    # Issue 9 (re-parsing after the check): a plain .safetensors carrying `safeload.structure`
    # metadata made safeload return other tensors than safetensors.load_file and the Hub show.
    # The record is honoured only in converted-store entries the engine validated.
    import torch
    from safetensors.torch import load_file, save_file

    import safeload

    f = tmp_path / "model.safetensors"
    record = {"t": "dict", "items": [["w", {"t": "tensor", "k": "x"}]]}
    save_file({"w": torch.ones(2), "x": torch.full((2,), 666.0)}, str(f),
              metadata={"safeload.structure": json.dumps(record),
                        "safeload.source_sha256": "0" * 64})
    got = safeload.load(f)
    want = load_file(str(f))
    assert set(got) == set(want) == {"w", "x"}
    assert all(torch.equal(got[k], want[k]) for k in want)
