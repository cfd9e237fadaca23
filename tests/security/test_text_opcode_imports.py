"""GLOBAL/INST text opcodes: an import is an import, whatever the module's name looks like.

Hostile review F (2026-12-07, issue 9). The lenient walk (`reach.would_import`) excused a first
GLOBAL/INST whose module text has whitespace ("no module has such a name"), and stopped at a
module line without a newline. Both are wrong: `__import__("evil mod")` runs `evil mod.py` from
sys.path, and pickle.py's readline returns the rest of the file at EOF, importing all but its
last byte (joblib.load always uses pickle.py). The strict machine gave up on a name line over
64 KiB, so a safetensors file whose 8-byte length reads as `c \\n` was clean. Only a file named
as text (`train.py`, `MANIFEST.in`) may begin like such an import and be skipped.
Each variant has a control: the real loader runs the planted module, which creates the marker.
"""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from canary_lib import Fires, Refused, scan_json, text_open
from safetensors.numpy import load_file

from safeload._cli import main
from safeload.inspection import inspect_bytes


def _plant(folder: Path, module: str, marker: Path) -> None:
    """The attacker's module on the loader's sys.path (its cwd): its import is the payload."""
    (folder / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")


@pytest.mark.parametrize("body", [b"cevil mod\nx\n", b"cevil mod\nx\n(S'padding'\n",
                                  b"ievil mod\nx\n", b"cevil\tmod\nx\n."],
                         ids=["global", "global-then-text", "inst", "tab"])
def test_a_module_name_with_whitespace_is_an_import(body: bytes, tmp_path: Path, marker: Path,
                                                    fires: Fires, refused: Refused) -> None:
    module = body[1:body.index(b"\n")].decode()
    _plant(tmp_path, module, marker)
    f = tmp_path / "weights.bin"
    f.write_bytes(body)
    # INST: pickle.py imports before it looks for the MARK (the C unpickler looks first)
    assert fires(f, "joblib" if body[:1] == b"i" else "pickle", sys_path=[str(tmp_path)])
    refused(f, match="import|pickle")


@pytest.mark.parametrize("body", [b"cevil_modX", b"N(cevil_modX", b"(ievil_modX"],
                         ids=["global", "after-a-prefix", "inst"])
def test_a_module_line_cut_by_the_end_of_the_file_is_an_import(
        body: bytes, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    _plant(tmp_path, "evil_mod", marker)
    f = tmp_path / "model.pkl"
    f.write_bytes(body)
    assert fires(f, "joblib", sys_path=[str(tmp_path)])  # pickle.py: the rest of the file
    refused(f, match="import|pickle")


@pytest.mark.parametrize("line", [100, 70 * 1024])
def test_safetensors_whose_length_reads_as_a_global_of_a_blank_module_is_refused(
        line: int, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # length 0x...0a2063: `c`, ` `, `\n`: GLOBAL of module " " (` .py` on sys.path); the name
    # line runs to the first newline after the header JSON, past 64 KiB in the second variant
    length = 0x0A2063
    meta = {"t": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
            "__metadata__": {"pad": "a" * line}}
    raw = json.dumps(meta, separators=(",", ":")).encode()
    assert len(raw) < length
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", length) + raw + b" " * (length - len(raw)) + b"\n...")
    assert list(load_file(str(f))) == ["t"]  # a valid safetensors file
    _plant(tmp_path, " ", marker)
    assert fires(f, "pickle", sys_path=[str(tmp_path)])
    refused(f, match="polyglot")


@pytest.mark.parametrize("name", ["train.py", "MANIFEST.in", "CMakeLists.txt", "LICENSE"])
def test_a_file_named_as_text_that_begins_like_such_an_import_is_skipped(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / name
    f.write_bytes(b"import os\nimport sys\n" if name != "MANIFEST.in" else b"include LICENSE\n")
    rc, out = scan_json(main, f, capsys)
    assert rc == 0 and out["files"][0]["status"] == "skipped", out


@pytest.mark.parametrize("low", [0x63, 0x69])
def test_safetensors_whose_length_reads_as_an_import_of_an_unimportable_name_is_clean(
        low: int) -> None:
    # An unaligned header length with low byte `c`/`i` reads as GLOBAL/INST of a module text
    # with NUL bytes: every unpickler's import fails there, so it is no polyglot (a benign
    # file from a writer that does not pad its header was refused).
    for pad in range(600):
        meta = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "__metadata__": {"x": "a" * pad}}
        raw = json.dumps(meta, separators=(",", ":")).encode()
        if len(raw) & 0xFF == low and len(raw) > 255:
            break
    data = struct.pack("<Q", len(raw)) + raw + b"\n\x01\x02\x03" * 4
    ins = inspect_bytes(data)
    assert (ins.format, ins.verdict) == ("safetensors", "clean"), ins.findings


@pytest.mark.parametrize("prefix", [b"I1\x00x\n0", b"L1\x00x\n0", b"F1.5\x00x\n0",
                                    b"I1\np0\x00x\n0", b"I1\np0\ng0\x00zz\n00"],
                         ids=["int", "long", "float", "put", "get"])
def test_a_number_cut_by_a_nul_does_not_end_the_walk(prefix: bytes, tmp_path: Path,
                                                     marker: Path, fires: Fires) -> None:
    # Review H: _pickle parses number arguments as C strings, which end at the first NUL
    # (`I1\0x` is INT 1); the walk stopped there, and scan called the payload after it skipped.
    f = tmp_path / "weights.bin"
    f.write_bytes(prefix + b"cbuiltins\nopen\n(S'" + str(marker).encode() + b"'\nS'w'\ntR.")
    assert fires(f, "pickle")
    assert inspect_bytes(f.read_bytes()).verdict == "unsafe"


def test_a_module_name_with_a_slash_is_an_import(tmp_path: Path, marker: Path,
                                                 fires: Fires) -> None:
    # Review H: zipimport looks `pkg/evil` up as pkg/evil.py in a zip on sys.path
    import zipfile

    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pkg/evil.py", f"open({str(marker)!r}, 'w').close()\n")
    f = tmp_path / "weights.bin"
    f.write_bytes(b"cpkg/evil\nf\n(S'x'\ntR")
    assert fires(f, "pickle", sys_path=[str(archive)])
    assert inspect_bytes(f.read_bytes()).verdict == "unsafe"


def test_a_payload_after_a_text_first_line_is_still_found(tmp_path: Path, marker: Path,
                                                          fires: Fires) -> None:
    # Review H: a text-named file's non-identifier first GLOBAL (an empty `my-data/` folder is
    # a namespace package) ended the walk, and the os.system after it went unseen.
    (tmp_path / "my-data").mkdir()
    f = tmp_path / "notes.txt"
    f.write_bytes(b"cmy-data\n__name__\n0cbuiltins\nopen\n(S'" + str(marker).encode()
                  + b"'\nS'w'\ntR")  # no STOP: the strict machine fails, only the walk decides
    assert fires(f, "pickle", sys_path=[str(tmp_path)])
    assert inspect_bytes(f.read_bytes(), text_ok=True).verdict == "unsafe"


@pytest.mark.parametrize("body", [b"I\x00\n0", b"I\x00 anything\n0", b"F\x00\n0", b"I\n0"],
                         ids=["int-nul-first", "int-nul-junk", "float-empty-head", "int-empty"])
def test_a_number_one_unpickler_reads_does_not_end_the_walk(
        body: bytes, tmp_path: Path, marker: Path, fires: Fires) -> None:
    # Review I: `I\0` is INT 0 to strtol (_pickle reads C strings), and the walk stopped there
    f = tmp_path / "weights.bin"
    f.write_bytes(body + b"cbuiltins\nopen\n(S'" + str(marker).encode() + b"'\nS'w'\ntR.")
    if body.startswith(b"I\x00"):
        assert fires(f, "pickle")
    assert inspect_bytes(f.read_bytes()).verdict == "unsafe"


@pytest.mark.parametrize("body", [b"NL\x00\n0", b"NFx\n0", b"Nprefix=${pcfiledir}\n0"],
                         ids=["long-nul", "float-word", "put-word"])
def test_a_number_both_unpicklers_refuse_ends_the_walk(body: bytes) -> None:
    # (numpy.pc begins `prefix=${pcfiledir}`: text, not the import read after it)
    import pickle

    data = body + b"cbuiltins\nopen\n(S'/nonexistent/never'\nS'w'\ntR."
    for load in (pickle.loads, pickle._loads):  # the control: both stop at the number
        with pytest.raises((ValueError, pickle.UnpicklingError)):
            load(data)
    assert inspect_bytes(data[:-1]).verdict == "skipped"  # (no STOP: the walk decides)


@pytest.mark.parametrize("module", [b"os\x00", b"os\x00junk", b".evil_dot"],
                         ids=["nul-after-a-frozen-name", "nul-then-junk", "leading-dot"])
def test_module_names_the_importers_still_resolve_are_imports(
        module: bytes, tmp_path: Path, marker: Path, fires: Fires) -> None:
    # Review I: the frozen importer compares C strings (`os\0` is os); `.evil` runs evil.py
    # before the empty top-level name fails
    _plant(tmp_path, "evil_dot", marker)
    f = tmp_path / "weights.bin"
    name = b"system" if module.startswith(b"os") else b"x"
    f.write_bytes(b"c" + module + b"\n" + name + b"\n(S'touch " + str(marker).encode()
                  + b"'\ntR")  # no STOP: only the walk decides
    assert fires(f, "pickle", sys_path=[str(tmp_path)])
    assert inspect_bytes(f.read_bytes()).verdict == "unsafe"
    assert inspect_bytes(f.read_bytes(), text_ok=True).verdict == "unsafe"


@pytest.mark.parametrize("inside", [b"Sx", b"I'", b"cX"], ids=["string", "int", "global"])
def test_a_text_argument_across_a_frame_end_counts_as_an_import(
        inside: bytes, tmp_path: Path, marker: Path, fires: Fires) -> None:
    # Review I: _pickle reads the part of a line inside a FRAME from its buffer and the rest
    # from the file (the head is lost): `Sx|'y'\n` is STRING 'y' to it, the walk saw `x'y'`
    rest = {b"Sx": b"'y'\n0", b"I'": b"1\n0", b"cX": b"builtins\nopen\n"}[inside]
    tail = b"(S'" + str(marker).encode() + b"'\nS'w'\ntR."
    payload = tail if inside == b"cX" else b"cbuiltins\nopen\n" + tail
    data = b"\x95" + len(inside).to_bytes(8, "little") + inside + rest + payload
    f = tmp_path / "weights.bin"
    f.write_bytes(data)
    import io
    import pickle

    with contextlib.suppress(Exception):
        pickle.load(io.BytesIO(data))  # the control: _pickle reads another line than the walk
    assert marker.exists()
    marker.unlink()
    assert inspect_bytes(data).verdict == "unsafe"
    assert not marker.exists()


def _frame(body: bytes) -> bytes:
    return b"\x95" + len(body).to_bytes(8, "little") + body


@pytest.mark.parametrize("how", ["nested-frame", "stop-inside-a-frame"])
def test_frame_layouts_no_pickler_writes_count_as_an_import(how: str) -> None:
    # Review J: a FRAME inside a FRAME (_pickle may drop the rest of the outer one and read
    # the inner from the file), and a STOP before its frame's end (the next load from the file
    # starts after the frame): the walk read other bytes than the unpicklers
    payload = b"cos\nsystem\n(S'true'\ntR."
    filler = b"X" + (9000).to_bytes(4, "little") + b"a" * 9000
    if how == "nested-frame":
        data = _frame(filler + b"0" + b"\x95" + len(payload).to_bytes(8, "little")
                      + b"Sjunk\n") + payload
    else:
        data = _frame(filler + b".Sjunk\n") + payload
    assert inspect_bytes(data[:-1]).verdict == "unsafe"


def test_a_text_first_line_whose_top_module_is_an_identifier_is_an_import(
        tmp_path: Path, marker: Path, fires: Fires) -> None:
    # Review J: `evilmod.x y` imports evilmod first; only the first dotted part decides
    _plant(tmp_path, "evilmod", marker)
    f = tmp_path / "notes.txt"
    f.write_bytes(b"cevilmod.x y\nz\n")
    assert fires(f, "pickle", sys_path=[str(tmp_path)])
    assert inspect_bytes(f.read_bytes(), text_ok=True).verdict == "unsafe"


# Review N (F2): `.pth` is a text name, and `site-packages` (no identifier) was excused as text,
# but it imports as a namespace package on every CPython: `site-packages._distutils_hack`
# reaches setuptools' hack module, whose `sys` and `os` are one protocol-4 dotted name away;
# then two APPENDs (no call opcode) make `sys.path_hooks.append(os.system)` and a missing
# import runs the command. The stream has no STOP, so it was "skipped", exit 0.
def _path_hook_payload(command: str, host: bytes) -> bytes:
    def glob(module: bytes, name: bytes) -> bytes:
        return b"c" + module + b"\n" + name + b"\n"

    cmd = f"{command} #".encode()
    return (b"N0\x80\x04" + glob(host, b"sys.path_hooks") + glob(host, b"os.system") + b"a0"
            + glob(host, b"sys.path") + b"X" + struct.pack("<I", len(cmd)) + cmd + b"a0"
            + glob(b"no-such-module", b"x"))


@pytest.mark.parametrize("name", ["model.pth", "notes.txt", "weights.pth.gz"])
def test_a_folder_on_sys_path_is_no_text_excuse(name: str, tmp_path: Path, marker: Path,
                                                fires: Fires,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import gzip
    import importlib.util

    payload = _path_hook_payload(f"touch {marker}", b"site-packages._distutils_hack")
    f = tmp_path / name
    f.write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    if importlib.util.find_spec("site-packages._distutils_hack") and not name.endswith(".gz"):
        assert fires(f, "pickle")  # the control: pickle.load runs the command
    rc, out = scan_json(main, f, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe", out
    assert not marker.exists()


@pytest.mark.parametrize("host", [b"lass A(B): ...", b"site-packages/_distutils_hack"],
                         ids=["text", "slash"])
def test_a_method_of_what_an_excused_line_imports_is_an_import(host: bytes) -> None:
    # The same APPENDs after lines excused as text (whitespace; a slash, which no path finder
    # resolves but zipimport might): a method call of the excused object counts, as a call does.
    payload = _path_hook_payload("true", host)
    assert inspect_bytes(payload, text_ok=True).verdict == "unsafe"
    # the text itself, with no method applied to it, stays text
    assert inspect_bytes(b"c" + host + b"\nx y\n", text_ok=True).verdict == "skipped"


@pytest.mark.parametrize("name", ["model.pth", "LICENSE", "notes.txt.gz"])
def test_a_module_name_with_a_leading_dot_is_an_import_in_a_text_named_file(
        name: str, tmp_path: Path, marker: Path, fires: Fires,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Review Q (F1): `.x` was taken for text (an empty first part), but `__import__(".x")`
    # has no parent to import and runs `x.py` from sys.path: the import is the payload.
    import gzip

    _plant(tmp_path, "planted_mod", marker)
    body = b"c.planted_mod\nx\n"
    f = tmp_path / name
    f.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
    if not name.endswith(".gz"):
        assert fires(f, "pickle", sys_path=[str(tmp_path)])
    rc, out = scan_json(main, f, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe", out
    assert not marker.exists()


def test_a_binary_pickle_gets_no_text_excuse_even_when_cut() -> None:
    # Review Q (F1b): a cut protocol-4 `model.pth` read as "damaged"; no text starts with PROTO
    body = b"\x80\x04\x95" + (1 << 20).to_bytes(8, "little") + b"cmport os\nsystem\n"
    assert inspect_bytes(body, text_ok=True).verdict == "unsafe"
    assert any(f.code != "malformed" for f in inspect_bytes(body, text_ok=True).findings)


@pytest.mark.parametrize("get", [b"g0\n0", b"h\x000", b"j\x00\x00\x00\x000"],
                         ids=["GET", "BINGET", "LONG_BINGET"])
def test_a_get_after_a_stop_does_not_end_a_reused_unpickler(
        get: bytes, tmp_path: Path, marker: Path, fires: Fires, refused: Refused,
        capsys: pytest.CaptureFixture[str]) -> None:
    # review R-1: a scalar first pickle memoises slot 0; the tail's GET 0 ended the lenient
    # walk's load (its memo started empty), so the file was "not a pickle" and skipped. One
    # Unpickler reading on has slot 0 and runs the payload.
    f = tmp_path / "weights.bin"
    f.write_bytes(b"I1\np0\n." + get + text_open(marker) + b".")
    assert fires(f, "one_unpickler")
    assert not fires(f, "pickle_stream")  # a fresh unpickler per object stops at the GET
    rc, out = scan_json(main, f, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe", out
    assert not marker.exists()


@pytest.mark.parametrize(("name", "body"), [
    ("LICENSE", b"cos\nsystem\n(S'touch MARKER'\ntR."),  # a call of what the word imports
    ("top_level.txt", b"cantigravity\nx\n"),  # a module that acts when imported
    ("RECORD", b"c.evil_mod_top\nx\n"),  # a leading dot (review Q)
    ("requirements.txt", b"cevil_mod.sub\nx\n"),  # a chain of modules
    ("model.pth", b"cevil_mod_top\nx\n"),  # a name a loader is given: no excuse at all
    # review X: a module file whose name is no identifier (`pip/__pip-runner__.py`)
    ("LICENSE", b"cevil_mod.__evil-runner__\nx\n"),
    # review X: a legal prefix with a pickle suffix is no legal text
    ("license_plate.sav", b"cevil_mod_top\nx\n"),
    ("LICENSE.p", b"cevil_mod_top\nx\n"),
], ids=["call", "side-effect-module", "leading-dot", "chain", "pth", "dashed-file",
        "sav", "p"])
def test_a_quiet_text_name_excuses_one_word_never_a_payload(
        name: str, body: bytes, tmp_path: Path, marker: Path, fires: Fires,
        capsys: pytest.CaptureFixture[str]) -> None:
    # review V relaxed the text excuse for names no loader is given (RECORD, LICENSE,
    # top_level.txt, requirements*.txt): one top-level word is text there; these are not
    (tmp_path / "evil_mod").mkdir()
    (tmp_path / "evil_mod" / "__init__.py").write_text("")
    (tmp_path / "evil_mod" / "sub.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "evil_mod" / "__evil-runner__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n")
    _plant(tmp_path, "evil_mod_top", marker)
    f = tmp_path / name
    f.write_bytes(body.replace(b"MARKER", str(marker).encode()))
    if b"antigravity" not in body:  # (the control would open a browser)
        assert fires(f, "pickle", sys_path=[str(tmp_path)])
    rc, out = scan_json(main, f, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe", out



@pytest.mark.parametrize("body", [b"(cevil_hash\nobj\nI1\nd", b"(cevil_hash\nobj\n\x91"],
                         ids=["DICT", "FROZENSET"])
def test_hashing_what_an_excused_line_imports_is_an_import(
        body: bytes, tmp_path: Path, marker: Path, fires: Fires,
        capsys: pytest.CaptureFixture[str]) -> None:
    # review X: DICT and FROZENSET call `__hash__` of what the excused word imports (the
    # missing STOP makes the file malformed, so only the lenient walk decides)
    (tmp_path / "evil_hash.py").write_text(
        "class _H:\n    def __hash__(self):\n"
        f"        open({str(marker)!r}, 'w').close()\n        return 1\nobj = _H()\n")
    f = tmp_path / "LICENSE"
    f.write_bytes(body)
    assert fires(f, "pickle", sys_path=[str(tmp_path)])
    rc, out = scan_json(main, f, capsys)
    assert rc == 1 and out["files"][0]["status"] == "unsafe", out
