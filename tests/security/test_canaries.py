"""Canaries: hostile pickles whose only effect is creating a marker file.

Each test builds one payload, shows in a CONTROL (an isolated child process, see conftest) that
the payload DOES fire under the loader it targets (`pickle.loads`, `torch.load(weights_only=
False)`, ...), then shows that under `safeload.load` and `safeload scan` it is refused and the
marker never appears.

Families here: dangerous callables outside any denylist, memo confusion, scanner-confusion
decoys, broken streams that execute before a parse error, payloads after a benign stream,
legacy torch files, BUILD/__setstate__ gadgets, APPEND/SETITEM method-call gadgets, EXT*,
NEWOBJ/NEWOBJ_EX/INST/OBJ, protocol-0 text pickles, persistent ids. Container families are in
test_canary_families.py, published scanner bypasses and the bugs found in
test_bypass_regressions.py.
"""

from __future__ import annotations

import marshal
import pickle
import shlex
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from canary_lib import (
    Fires,
    Op,
    Reduce,
    Refused,
    call,
    g,
    lit,
    open_code,
    opener,
    p2,
    p4,
    text_open,
)

from safeload.errors import UnsafeCheckpointError

LOADERS_PICKLE = ("import pickle, sys\ntry:\n    pickle.loads(open(sys.argv[1], 'rb').read())\n"
                  "except Exception:\n    pass")

# ------------------------------------------------------------------------------------------
# Dangerous callables outside any denylist. safeload is an allowlist, so every one of these is
# refused by name; the table doubles as a record of the published denylist bypasses.


def _touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _runpy(m: Path) -> bytes:
    return p4(call(g("runpy", "_run_code"), open_code(m), {}))


def _pip(m: Path) -> bytes:
    # CVE-2025-1716 (picklescan < 0.0.21 did not treat pip as unsafe). pip writes its log file.
    return p4(call(g("pip", "main"), ["--log", str(m), "--quiet", "--no-input",
                                       "--disable-pip-version-check", "list"]))


def _pydoc_locate(m: Path) -> bytes:
    return p4(call(call(g("pydoc", "locate"), "builtins.open"), str(m), "w"))


def _bdb(m: Path) -> bytes:
    # GHSA-4675-36f9-wf6r / GHSA-46h3-79wf-xr6c (bdb/pdb/profile/trace/timeit debuggers).
    return p4(call(g("bdb", "Bdb.run"), call(g("bdb", "Bdb")), open_code(m)))


def _timeit(m: Path) -> bytes:
    return p4(call(g("timeit", "timeit"), open_code(m), "pass", g("time", "perf_counter"), 1))


def _cprofile(m: Path) -> bytes:
    return p4(call(g("cProfile", "run"), open_code(m)))


def _profile(m: Path) -> bytes:
    return p4(call(g("profile", "run"), open_code(m)))


def _code_interp(m: Path) -> bytes:
    return p4(call(g("code", "InteractiveInterpreter.runsource"),
                   call(g("code", "InteractiveInterpreter")), open_code(m)))


def _import_module(m: Path) -> bytes:
    # picklescan#66 / PR#74: importlib.import_module reaches every blocked name.
    module = call(g("importlib", "import_module"), "builtins")
    return p4(call(call(g("builtins", "getattr"), module, "open"), str(m), "w"))


def _marshal(m: Path) -> bytes:
    code = marshal.dumps(compile(open_code(m), "<canary>", "exec"))
    fn = call(g("types", "FunctionType"), call(g("marshal", "loads"), code), {})
    return p4(call(fn))


def _ctypes(m: Path) -> bytes:
    libc_system = call(g("builtins", "getattr"), call(g("ctypes", "CDLL"), None), "system")
    return p4(call(libc_system, _touch(m).encode()))


def _mp_spawn(m: Path) -> bytes:
    touch = (shutil.which("touch") or "/usr/bin/touch").encode()
    return p4(call(g("multiprocessing.util", "spawnv_passfds"), touch,
                   [b"touch", str(m).encode()], []))


def _asyncio(m: Path) -> bytes:
    # CVE-2025-10157 (JFrog): asyncio.unix_events._UnixSubprocessTransport._start.
    fake_self = call(g("argparse", "Namespace"))
    return p4(call(g("asyncio.unix_events", "_UnixSubprocessTransport._start"), fake_self,
                   _touch(m), True, None, None, None, 0))


def _collect_env(m: Path) -> bytes:
    return p4(call(g("torch.utils.collect_env", "run"), _touch(m)))


def _attrgetter(m: Path) -> bytes:
    # GHSA-m273-6v24-x4m4 (operator.attrgetter): an allowlisted value (pathlib.Path) plus a
    # non-allowlisted accessor is still a call.
    touch = call(call(g("operator", "attrgetter"), "touch"), call(g("pathlib", "Path"), str(m)))
    return p4(call(touch))


def _methodcaller(m: Path) -> bytes:
    return p4(call(call(g("operator", "methodcaller"), "touch"),
                   call(g("pathlib", "Path"), str(m))))


def _c_methodcaller(m: Path) -> bytes:
    # GHSA-955r-x9j8-7rhh: the C module `_operator` under its own name.
    return p4(call(call(g("_operator", "methodcaller"), "touch"),
                   call(g("pathlib", "Path"), str(m))))


def _partial(m: Path) -> bytes:
    return p4(call(call(g("functools", "partial"), g("builtins", "open"), str(m), "w")))


def _getattr_import(m: Path) -> bytes:
    mod = call(g("builtins", "__import__"), "builtins")
    return p4(call(call(g("builtins", "getattr"), mod, "open"), str(m), "w"))


def _numpy_f2py(m: Path) -> bytes:
    # fickling PR#210: numpy.f2py.crackfortran.getlincoef evaluates its argument.
    return p4(call(g("numpy.f2py.crackfortran", "getlincoef"), open_code(m) + " or 0", ()))


def _pkgutil(m: Path) -> bytes:
    # GHSA-vvpj-8cmc-gx39: pkgutil.resolve_name is a universal trampoline.
    return p4(call(call(g("pkgutil", "resolve_name"), "builtins:open"), str(m), "w"))


def _uuid(m: Path) -> bytes:
    # CVE-2026-56315 (picklescan < 1.0.4): uuid._get_command_stdout runs a program.
    return p4(call(g("uuid", "_get_command_stdout"), "touch", str(m)))


def _nested_pickle(m: Path) -> bytes:
    # GHSA-84r2-jw7c-4r5q: pickle.loads inside a pickle.
    inner = p4(opener(m))
    return p4(call(g("_pickle", "loads"), inner))


def _shutil(m: Path) -> bytes:
    # CVE-2025-10155/10156 write-ups list file-writing callables (shutil, _io.FileIO).
    return p4(call(g("shutil", "copyfile"), "/dev/null", str(m)))


def _fileio(m: Path) -> bytes:
    return p4(call(g("_io", "FileIO"), str(m), "w"))


def _venv(m: Path) -> bytes:
    # GHSA-vqmv-47xg-9wpr (pip/venv/ensurepip).
    return p4(call(g("venv", "create"), str(m)))


def _torch_fx_exec(m: Path) -> bytes:
    # modelscan PR#313 lists torch-internal exec gadgets (torch.utils.bottleneck, removed from
    # this torch); torch.fx.graph_module._exec_with_source is one that this torch still has.
    return p4(call(g("torch.fx.graph_module", "_exec_with_source"), open_code(m), {}))


def _exec(m: Path) -> bytes:
    return p4(call(g("builtins", "exec"), open_code(m)))


def _os_system(m: Path) -> bytes:
    return pickle.dumps(Reduce(__import__("os").system, _touch(m)), protocol=2)


CALLABLES: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("runpy._run_code", _runpy, r"runpy\._run_code"),
    ("pip.main", _pip, r"pip\.main"),
    ("pydoc.locate", _pydoc_locate, r"pydoc\.locate"),
    ("bdb.Bdb.run", _bdb, r"bdb\.Bdb"),
    ("timeit.timeit", _timeit, r"timeit\.timeit"),
    ("cProfile.run", _cprofile, r"cProfile\.run"),
    ("profile.run", _profile, r"profile\.run"),
    ("code.InteractiveInterpreter", _code_interp, r"code\.InteractiveInterpreter"),
    ("importlib.import_module", _import_module, r"importlib\.import_module"),
    ("marshal.loads", _marshal, r"marshal\.loads"),
    ("ctypes.CDLL", _ctypes, r"ctypes\.CDLL"),
    ("multiprocessing.util.spawnv_passfds", _mp_spawn, r"multiprocessing\.util"),
    ("asyncio._UnixSubprocessTransport._start", _asyncio, r"asyncio\.unix_events"),
    ("torch.utils.collect_env.run", _collect_env, r"torch\.utils\.collect_env\.run"),
    ("operator.attrgetter", _attrgetter, r"operator\.attrgetter"),
    ("operator.methodcaller", _methodcaller, r"operator\.methodcaller"),
    ("_operator.methodcaller", _c_methodcaller, r"_operator\.methodcaller"),
    ("functools.partial", _partial, r"functools\.partial"),
    ("builtins.getattr+__import__", _getattr_import, r"builtins\.getattr"),
    ("numpy.f2py.getlincoef", _numpy_f2py, r"numpy\.f2py"),
    ("pkgutil.resolve_name", _pkgutil, r"pkgutil\.resolve_name"),
    ("uuid._get_command_stdout", _uuid, r"uuid\._get_command_stdout"),
    ("_pickle.loads", _nested_pickle, r"_pickle\.loads"),
    ("shutil.copyfile", _shutil, r"shutil\.copyfile"),
    ("_io.FileIO", _fileio, r"_io\.FileIO"),
    ("venv.create", _venv, r"venv\.create"),
    ("torch.fx._exec_with_source", _torch_fx_exec, r"torch\.fx\.graph_module"),
    ("builtins.exec", _exec, r"builtins\.exec"),
    ("os.system", _os_system, r"posix\.system"),
]


@pytest.mark.parametrize(("name", "build", "match"), CALLABLES, ids=[c[0] for c in CALLABLES])
def test_dangerous_callable_outside_any_denylist(name: str, build: Callable[[Path], bytes],
                                                 match: str, tmp_path: Path, marker: Path,
                                                 fires: Fires, refused: Refused) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(build(marker))
    assert fires(path, "pickle", timeout=60), f"control: {name} payload did not fire"
    exc, report = refused(path, UnsafeCheckpointError, match=match)
    assert isinstance(exc, pickle.UnpicklingError)  # what torch.load(weights_only=True) raises
    assert any(f["code"] in ("global-not-allowed", "call-not-allowed")
               for f in report["findings"])  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------
# Memo confusion: what a scanner thinks memo[i] holds is not what pickle puts there.


def _memo_put_vs_memoize(m: Path) -> bytes:
    # picklescan#14 (Doyensec): BINPUT at explicit indices, then MEMOIZE. A scanner that
    # numbers memo entries by counting MEMOIZE thinks memo[0]/memo[1] are torch._utils names.
    return (b"\x80\x04"
            + lit("builtins") + b"q\x000" + lit("open") + b"q\x010"
            + lit("torch._utils") + b"\x940" + lit("_rebuild_tensor_v2") + b"\x940"
            + b"h\x00h\x01\x93" + lit((str(m), "w")) + b"R.")


def _memo_get_before_stack_global(m: Path) -> bytes:
    # picklescan#22 / PR#23: PUT out of order, GET right before STACK_GLOBAL.
    return (b"Vbuiltins\np2\n0Vopen\np3\n0Vtorch\np0\n0VLongStorage\np1\n0"
            b"g2\ng3\n\x93(V" + str(m).encode() + b"\nVw\ntR.")


def _memoize_after_high_put(m: Path) -> bytes:
    # MEMOIZE uses len(memo), not "last index + 1": after LONG_BINPUT 1000, MEMOIZE writes 1.
    return (b"\x80\x04"
            + lit("builtins") + b"r\xe8\x03\x00\x000"  # memo[1000] = "builtins"
            + lit("open") + b"\x940"                   # memo[1] = "open"
            + lit("torch") + b"\x940"                  # memo[2]
            + b"j\xe8\x03\x00\x00h\x01\x93" + lit((str(m), "w")) + b"R.")


def _memo_overwrite(m: Path) -> bytes:
    # The same index written twice: the last write wins.
    return (b"\x80\x04" + lit("torch") + b"q\x000" + lit("builtins") + b"q\x000"
            + lit("open") + b"q\x010" + b"h\x00h\x01\x93" + lit((str(m), "w")) + b"R.")


MEMO = [("put_vs_memoize", _memo_put_vs_memoize),
        ("get_before_stack_global", _memo_get_before_stack_global),
        ("memoize_after_high_put", _memoize_after_high_put),
        ("index_overwritten", _memo_overwrite)]


@pytest.mark.parametrize(("name", "build"), MEMO, ids=[c[0] for c in MEMO])
def test_memo_confusion(name: str, build: Callable[[Path], bytes], tmp_path: Path,
                        marker: Path, fires: Fires, refused: Refused) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(build(marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# ------------------------------------------------------------------------------------------
# Scanner-confusion decoys: what sits next to STACK_GLOBAL is not what it consumes.


def _decoy_short_binunicode(m: Path) -> bytes:
    # Harmless-looking SHORT_BINUNICODE names popped, real operands as BINUNICODE (a scanner
    # that only reads the two most recent SHORT_BINUNICODE sees torch._utils).
    def bu(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()
    return (b"\x80\x04" + bu("builtins") + bu("open")
            + lit("torch._utils") + b"0" + lit("_rebuild_tensor_v2") + b"0"
            + b"\x93" + lit((str(m), "w")) + b"R.")


def _decoy_pop_mark(m: Path) -> bytes:
    return (b"\x80\x04" + lit("builtins") + b"(" + lit("torch") + lit("Size") + b"1"
            + lit("open") + b"\x93" + lit((str(m), "w")) + b"R.")


def _decoy_dup(m: Path) -> bytes:
    return (b"\x80\x04" + lit("builtins") + b"2" + b"0" + lit("open") + b"\x93"
            + lit((str(m), "w")) + b"R.")


def _decoy_stack_global_operands_from_tuple(m: Path) -> bytes:
    # Operands built by unpacking nothing: names come out of a memoized tuple via GET.
    return (b"\x80\x04" + lit("builtins") + b"\x94" + lit("open") + b"\x94" + b"\x86\x940"
            + b"h\x00h\x01\x93" + lit((str(m), "w")) + b"R.")


DECOYS = [("short_binunicode_pop", _decoy_short_binunicode), ("pop_mark", _decoy_pop_mark),
          ("dup", _decoy_dup), ("memo_tuple", _decoy_stack_global_operands_from_tuple)]


@pytest.mark.parametrize(("name", "build"), DECOYS, ids=[c[0] for c in DECOYS])
def test_scanner_confusion_decoys(name: str, build: Callable[[Path], bytes], tmp_path: Path,
                                  marker: Path, fires: Fires, refused: Refused) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(build(marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# ------------------------------------------------------------------------------------------
# "Broken" pickles that execute before the parse error (exception-oriented programming:
# GHSA-9gvj-pp9x-gcfr; arXiv:2508.19774; modelscan#348, PR#355).

BROKEN = {
    "garbage_after_stop": lambda m: p4(opener(m)) + b"\xde\xad\xbe\xef",
    "truncated_no_stop": lambda m: p4(opener(m))[:-1],
    "truncated_mid_opcode": lambda m: p4(opener(m))[:-1] + b"X\xff\xff",
    "bad_opcode": lambda m: p4(opener(m))[:-1] + b"\xff.",
    "stack_left_over": lambda m: p4(opener(m), None),
    "proto0_then_garbage": lambda m: text_open(m) + b"\x00\x00garbage",
    "missing_memo": lambda m: p4(opener(m))[:-1] + b"0h\x09.",
    "persid_without_loader": lambda m: p4(opener(m))[:-1] + b"0Pfoo\n.",
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_stream_executes_before_error(how: str, tmp_path: Path, marker: Path, fires: Fires,
                                             refused: Refused) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(BROKEN[how](marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# ------------------------------------------------------------------------------------------
# Payloads after a benign stream.


def test_second_pickle_after_stop(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    benign = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)
    path = tmp_path / "model.pkl"
    path.write_bytes(benign + p4(opener(marker)))
    assert fires(path, "pickle_stream")  # any loader that reads more than one stream
    _, report = refused(path, UnsafeCheckpointError, match=r"bytes after STOP")
    assert any("builtins.open" in (f["global"] or "") for f in report["findings"])  # type: ignore[union-attr]


def _legacy_streams(obj: object, tmp_path: Path) -> list[bytes]:
    """The streams of a real legacy (pre-1.6) torch.save file, split at each STOP."""
    import pickletools

    import torch

    src = tmp_path / "legacy_src.pt"
    torch.save(obj, src, _use_new_zipfile_serialization=False)
    raw = src.read_bytes()
    streams, pos = [], 0
    for _ in range(5):
        end = pos
        for op, _arg, at in pickletools.genops(raw[pos:]):
            if op.name == "STOP":
                end = pos + at + 1
                break
        streams.append(raw[pos:end])
        pos = end
    streams.append(raw[pos:])  # the raw storages
    return streams


@pytest.mark.parametrize("which", ["magic", "protocol", "sys_info", "data", "storage_keys"])
def test_legacy_torch_payload_in_nth_pickle(which: str, tmp_path: Path, marker: Path, fires: Fires,
                                            refused: Refused) -> None:
    import torch

    streams = _legacy_streams({"w": torch.arange(4.0)}, tmp_path)
    index = ["magic", "protocol", "sys_info", "data", "storage_keys"].index(which)
    original = pickle.loads(streams[index]) if which != "data" else None
    if which == "data":
        streams[3] = p2(opener(marker))
        streams[4], streams[5] = pickle.dumps([], protocol=2), b""
    else:
        # The payload runs, its result is popped, and the stream still yields what torch expects.
        streams[index] = p2(opener(marker))[:-1] + b"0" + pickle.dumps(original, protocol=2)[2:]
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"".join(streams))
    assert fires(path, "torch")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# ------------------------------------------------------------------------------------------
# BUILD / __setstate__ gadgets.


def _build_partial(m: Path) -> bytes:
    # An innocent partial(print), re-pointed by BUILD (partial.__setstate__) at open, then called.
    obj = Op(lit(g("functools", "partial")) + lit((g("builtins", "print"),)) + b"\x81"
             + lit((g("builtins", "open"), (str(m), "w"), {}, None)) + b"b")
    return p4(call(obj))


def _build_slotstate_namespace(m: Path) -> bytes:
    # An allowlisted object (argparse.Namespace) given a (dict, slots) state: pickle calls
    # setattr(); the attribute is then used as a method by APPEND.
    ns = Op(lit(g("argparse", "Namespace")) + b")\x81"
            + lit((None, {"append": g("os", "mkdir")})) + b"b")
    return b"\x80\x04" + ns.b + lit(str(m)) + b"a."


def _build_numpy_object_array(m: Path) -> bytes:
    # numpy attribute smuggling: an object ndarray's BUILD state carries the payload.
    import numpy as np

    return pickle.dumps(np.array([Reduce(open, str(m), "w")], dtype=object), protocol=2)


def _build_on_numpy_class(m: Path) -> bytes:
    # BUILD on the numpy.dtype class itself (not an instance), state smuggling a call.
    return p4(Op(lit(g("numpy", "dtype")) + lit({"x": opener(m)}) + b"b"))


BUILDS = [("partial_setstate", _build_partial, r"functools\.partial"),
          ("namespace_slotstate", _build_slotstate_namespace, r"BUILD|builtins\.open"),
          ("numpy_object_array", _build_numpy_object_array, r"(builtins|io)\.open|object"),
          ("numpy_class", _build_on_numpy_class, r"builtins\.open")]


@pytest.mark.parametrize(("name", "build", "match"), BUILDS, ids=[b[0] for b in BUILDS])
def test_build_setstate_gadget(
        name: str, build: Callable[[Path], bytes], match: str, tmp_path: Path, marker: Path, fires:
        Fires, refused: Refused) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(build(marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=match)


# ------------------------------------------------------------------------------------------
# APPEND / SETITEM on non-containers: pickle calls the object's own append/__setitem__.


def _gadget_object(attr: str, fn: Op) -> Op:
    # types.SimpleNamespace() with an instance attribute named like the method pickle calls.
    return Op(lit(g("types", "SimpleNamespace")) + b")\x81" + lit({attr: fn}) + b"b")


def _append_gadget(m: Path) -> bytes:
    return b"\x80\x04" + _gadget_object("append", g("os", "system")).b + lit(
        f"touch {shlex.quote(str(m))}") + b"a."


def _appends_gadget(m: Path) -> bytes:
    # APPENDS calls obj.extend(list_of_items): subprocess.call(["touch", marker]).
    return (b"\x80\x04" + _gadget_object("extend", g("subprocess", "call")).b
            + b"(" + lit("touch") + lit(str(m)) + b"e.")


def _cookie(m: Path) -> Op:
    # pickle's SETITEM on a non-dict is PyObject_SetItem: the type's own __setitem__.
    # http.cookies.BaseCookie.__setitem__ calls self.value_encode(value), an attribute that
    # BUILD can replace on the instance.
    return Op(lit(g("http.cookies", "SimpleCookie")) + b")\x81"
              + lit({"value_encode": g("os", "system")}) + b"b")


def _setitem_gadget(m: Path) -> bytes:
    return b"\x80\x04" + _cookie(m).b + lit("k") + lit(f"touch {shlex.quote(str(m))}") + b"s."


def _setitems_gadget(m: Path) -> bytes:
    return (b"\x80\x04" + _cookie(m).b + b"(" + lit("k")
            + lit(f"touch {shlex.quote(str(m))}") + b"u.")


def _setitem_on_global(m: Path) -> bytes:
    # SETITEM straight onto an imported object: os.environ.__setitem__ calls putenv(). The
    # control turns the proof (the variable is set) into the marker.
    return b"\x80\x04" + lit(g("os", "environ")) + lit("SAFELOAD_CANARY") + lit(str(m)) + b"s."


MUTATIONS = [("append", _append_gadget, r"types\.SimpleNamespace"),
             ("appends_extend", _appends_gadget, r"types\.SimpleNamespace"),
             ("setitem", _setitem_gadget, r"http\.cookies\.SimpleCookie"),
             ("setitems", _setitems_gadget, r"http\.cookies\.SimpleCookie"),
             ("setitem_on_global", _setitem_on_global, r"os\.environ")]

ENV_PROBE = ("import os\nif os.environ.get('SAFELOAD_CANARY'):\n"
             "    open(os.environ['SAFELOAD_CANARY'], 'w').close()")


@pytest.mark.parametrize(("name", "build", "match"), MUTATIONS, ids=[b[0] for b in MUTATIONS])
def test_append_setitem_method_call_gadget(name: str, build: Callable[[Path], bytes], match: str,
                                           tmp_path: Path, marker: Path, fires: Fires,
                                           refused: Refused) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(build(marker))
    loader = LOADERS_PICKLE + ("\n" + ENV_PROBE if name == "setitem_on_global" else "")
    assert fires(path, loader)
    refused(path, UnsafeCheckpointError, match=match)


def test_append_setitem_on_allowlisted_objects_are_findings() -> None:
    # No canary needed: APPEND onto a torch.Size / SETITEM onto a Path are method calls pickle
    # would make; the machine must report them (mutation-not-allowed), never ignore them.
    from safeload.inspection import inspect_bytes

    size = call(g("torch", "Size"), (1, 2))
    ins = inspect_bytes(b"\x80\x04" + size.b + lit(3) + b"a.")
    assert ins.verdict == "unsafe"
    assert [f.code for f in ins.findings] == ["mutation-not-allowed"]
    path_obj = call(g("pathlib", "Path"), "x")
    ins = inspect_bytes(b"\x80\x04" + path_obj.b + lit("k") + lit("v") + b"s.")
    assert [f.code for f in ins.findings] == ["mutation-not-allowed"]


# ------------------------------------------------------------------------------------------
# EXT1/EXT2/EXT4: imports through copyreg's extension registry.

EXT_SETUP = "import copyreg\ncopyreg.add_extension('builtins', 'open', {code})"


@pytest.mark.parametrize(("op", "code"), [(b"\x82", 0x7F), (b"\x83", 0x1234),
                                          (b"\x84", 0x12345678)], ids=["EXT1", "EXT2", "EXT4"])
def test_ext_opcodes_with_a_registered_extension(
        op: bytes, code: int, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    width = {b"\x82": "<B", b"\x83": "<H", b"\x84": "<i"}[op]
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x02" + op + struct.pack(width, code) + lit((str(marker), "w"))
                     + b"R.")
    assert fires(path, "pickle", setup=EXT_SETUP.format(code=code))
    refused(path, UnsafeCheckpointError, match=r"extension-registry import")


# ------------------------------------------------------------------------------------------
# NEWOBJ / NEWOBJ_EX / INST / OBJ.


def _newobj(m: Path) -> bytes:
    part = Op(lit(g("functools", "partial")) + lit((g("builtins", "open"), str(m), "w"))
              + b"\x81")
    return p4(call(part))


def _newobj_ex(m: Path) -> bytes:
    part = Op(lit(g("functools", "partial")) + lit((g("builtins", "open"), str(m)))
              + lit({"mode": "w"}) + b"\x92")
    return p4(call(part))


def _inst(m: Path) -> bytes:
    return b"(V" + str(m).encode() + b"\nVw\nibuiltins\nopen\n."


def _obj(m: Path) -> bytes:
    return b"\x80\x02(" + lit(g("builtins", "open")) + lit(str(m)) + lit("w") + b"o."


def _obj_proto0_pty_style(m: Path) -> bytes:
    # fickling PR#108's shape ("(cpty\nspawn\nS"id"\no."): OBJ on a protocol-0 GLOBAL.
    return b"(cos\nsystem\nS'" + f"touch {shlex.quote(str(m))}".encode() + b"'\no."


CONSTRUCTORS = [("NEWOBJ", _newobj, r"functools\.partial"),
                ("NEWOBJ_EX", _newobj_ex, r"functools\.partial"),
                ("INST", _inst, r"builtins\.open"),
                ("OBJ", _obj, r"builtins\.open"),
                ("OBJ_proto0", _obj_proto0_pty_style, r"os\.system")]


@pytest.mark.parametrize(("name", "build", "match"), CONSTRUCTORS,
                         ids=[c[0] for c in CONSTRUCTORS])
def test_newobj_inst_obj_variants(
        name: str, build: Callable[[Path], bytes], match: str, tmp_path: Path, marker: Path, fires:
        Fires, refused: Refused) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(build(marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=match)


# ------------------------------------------------------------------------------------------
# Protocol-0 text pickles and Python-2 names.

TEXT = {
    "GLOBAL_REDUCE": lambda m: text_open(m) + b".",
    "INST": _inst,
    "py2_builtin_name": lambda m: b"c__builtin__\nopen\n(V" + str(m).encode() + b"\nVw\ntR.",
    "pop_then_none": lambda m: text_open(m) + b"0N.",
}


@pytest.mark.parametrize("how", sorted(TEXT))
def test_protocol0_text_pickle(
        how: str, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(TEXT[how](marker))
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# ------------------------------------------------------------------------------------------
# PERSID / BINPERSID in plain pickles (no persistent_load): refused even when the id itself is
# harmless, and a payload before it is still reported.


@pytest.mark.parametrize("op", [b"Pfoo\n", lit(("storage",)) + b"Q"], ids=["PERSID", "BINPERSID"])
def test_persistent_id_in_plain_pickle(op: bytes, tmp_path: Path, marker: Path, fires: Fires,
                                       refused: Refused) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(p4(opener(marker))[:-1] + b"0" + op + b".")
    assert fires(path, "pickle")
    _, report = refused(path, UnsafeCheckpointError, match=r"builtins\.open")
    assert any("persistent id" in f["message"] for f in report["findings"])  # type: ignore[union-attr]


def test_unsafe_error_is_an_unpickling_error() -> None:
    assert issubclass(UnsafeCheckpointError, pickle.UnpicklingError)
    assert sys.version_info >= (3, 10)
