"""Property tests for the inspector and the symbolic pickle machine.

(a) Robustness: random opcode streams, stack-aware structured streams, and byte/opcode-level
    mutations of real `torch.save` / `pickle.dump` / safetensors / NumPy outputs (including a
    mutated `data.pkl` re-zipped with valid CRCs): `inspect_bytes` always returns a verdict and
    never raises; `PickleMachine.run()` raises only `MalformedPickle`; time and memory stay
    bounded (a huge declared length fails fast as truncated, with no allocation of that size).
(b) Differential oracle: whatever the inspector does not call unsafe, CPython's real
    unpicklers (C `pickle.Unpickler` and pure-Python `pickle._Unpickler`, `find_class` and
    `persistent_load` replaced by inert recording stubs, so nothing real is ever imported or
    called) may not use to import a global outside conversion/allowlist.json (after the real
    protocol<3 `_compat_pickle` renames), nor to call methods on objects the machine models as
    plain data. For a "skipped" (not a pickle) verdict, no import at all is allowed.
(c) Value oracle: an import-free stream the machine passes must load with both real unpicklers
    to exactly the machine's value (the machine promises to be exact and never looser).

The generators live in `_safeload_fuzzgen.py` and are shared with benchmarks/fuzz_inspector.py.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from _safeload_fuzzgen import (
    LEN_OPS,
    OPS,
    Corpus,
    DataChooser,
    build_corpus,
    check_stream,
    gen_plain_values,
    gen_prefix_then_import,
    gen_soup,
    gen_structured,
    importable_allowlist,
    mutate_corpus,
    op,
    run_machine,
    value_oracle,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safeload_conversion.pickle_vm import MalformedPickle, PickleMachine

from safeload.inspection import inspect_bytes

PROPERTY = settings(
    max_examples=300,
    deadline=2000,  # ms per example: bounded runtime
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


@pytest.fixture(autouse=True, scope="module")
def _safeload_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("safeload-home-fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFELOAD_HOME", str(home))
        yield home


_CORPUS: Corpus | None = None


def corpus() -> Corpus:
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = build_corpus()
    return _CORPUS


ALLOWED = importable_allowlist()


def _assert_ok(data: bytes, *, oracle: bool = True) -> None:
    checked = check_stream(data, ALLOWED, oracle=oracle)
    assert not checked.violations, f"stream {data.hex()}:\n" + "\n".join(checked.violations)


# ------------------------------------------------------------------------------------------
# (a) + (b): every generator through every check


@PROPERTY
@given(st.data())
def test_random_opcode_streams(data: st.DataObject) -> None:
    _assert_ok(gen_soup(DataChooser(data)))


@PROPERTY
@given(st.data())
def test_odd_prefix_then_import(data: st.DataObject) -> None:
    _assert_ok(gen_prefix_then_import(DataChooser(data)))


@PROPERTY
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _assert_ok(data)


@PROPERTY
@given(st.data())
def test_structured_streams(data: st.DataObject) -> None:
    _assert_ok(gen_structured(DataChooser(data)))


@PROPERTY
@given(st.data())
def test_mutated_real_checkpoints(data: st.DataObject) -> None:
    _, stream = mutate_corpus(DataChooser(data), corpus())
    _assert_ok(stream)


@PROPERTY
@given(st.data())
def test_import_free_values_match_real_unpicklers(data: st.DataObject) -> None:
    stream = gen_plain_values(DataChooser(data))
    run = run_machine(stream, False)
    problems = value_oracle(stream, run)
    assert not problems, f"stream {stream.hex()}:\n" + "\n".join(problems)


# Streams the random generators found: each once "skipped" while a real unpickler called a
# method of what persistent_load returned (so they are calls into the loader, never text).
_PERSISTENT_CALLS = {
    "persid-bytes-append": bytes.fromhex("500a420000000061"),
    "binpersid-none-build": b"NQNb",
    "persid-mark-extend": b"P\n(Ne",
}


@pytest.mark.parametrize("stream", list(_PERSISTENT_CALLS.values()), ids=list(_PERSISTENT_CALLS))
def test_method_call_on_a_persistent_object_is_never_skipped(stream: bytes) -> None:
    _assert_ok(stream)
    assert inspect_bytes(stream).verdict == "unsafe"


def test_text_starting_with_persid_letters_is_still_skipped() -> None:
    text = b"Permission to use\npurpose\nand more"
    assert inspect_bytes(text).verdict == "skipped"


def test_corpus_oracles_quiet() -> None:
    """The unmutated real files go through every check (false positives on real files are
    tested in tests/loading/test_benign_checkpoints.py)."""
    verdicts = []
    for name, _, data in corpus().files:
        verdicts.append(inspect_bytes(data, name=name).verdict)
        _assert_ok(data)
    assert verdicts.count("clean") >= len(verdicts) - 4
    assert sum(run_machine(s, t).clean for _, t, s in corpus().pickles) >= 10


# ------------------------------------------------------------------------------------------
# Memory and time bounds


HUGE = {"len4": [0x7FFFFFFF, 0xFFFFFFFF], "len4s": [0x7FFFFFFF],
        "len8": [2**31, 2**40, 2**63 - 1, 2**64 - 1]}


@pytest.mark.parametrize("name", sorted(LEN_OPS))
def test_huge_declared_length_fails_fast_without_allocating(name: str) -> None:
    code, kind = OPS[name]
    if kind == "len1":
        pytest.skip("a one-byte length cannot be huge")
    fmt = {"len4": "<I", "len4s": "<I", "len8": "<Q"}[kind]
    for n in HUGE[kind]:
        for proto in (b"", b"\x80\x05", b"\x80\x02"):
            stream = proto + bytes([code]) + struct.pack(fmt, n) + b"abc."
            tracemalloc.start()
            t0 = time.perf_counter()
            try:
                with pytest.raises(MalformedPickle, match="truncated"):
                    PickleMachine(stream).run()
                ins = inspect_bytes(stream)
            finally:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            assert ins.verdict != "clean"
            assert time.perf_counter() - t0 < 1.0
            assert peak < 1 << 20, f"{name} with length {n}: {peak} bytes allocated"


def test_huge_frame_fails_fast() -> None:
    for n in (2**32, 2**63, 2**64 - 1):
        stream = b"\x80\x04" + op("FRAME", n) + b"N."
        with pytest.raises(MalformedPickle):
            PickleMachine(stream).run()
        assert inspect_bytes(stream).verdict == "unsafe"


@settings(max_examples=150, deadline=2000,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_memory_stays_proportional_to_input(data: st.DataObject) -> None:
    c = DataChooser(data)
    stream = c.choice([gen_soup, gen_structured])(c)
    tracemalloc.start()
    try:
        inspect_bytes(stream)
        for torch_mode in (False, True):
            run_machine(stream, torch_mode)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # text arguments are read through a window of up to 64 KiB: allow that, plus a generous
    # per-input-byte factor; a huge declared length must never show up here.
    assert peak < (1 << 20) + 200 * len(stream), (peak, stream.hex())


def test_long_text_opcode_stream_is_linear() -> None:
    """A protocol-0 pickle of many small INT lines: time grows linearly with the input."""
    import pickle

    def cost(n: int) -> float:
        stream = pickle.dumps(list(range(n)), protocol=0)
        t0 = time.perf_counter()
        PickleMachine(stream).run()
        return time.perf_counter() - t0

    small, big = min(cost(2000) for _ in range(3)), min(cost(20000) for _ in range(3))
    assert big < 30 * max(small, 1e-4), (small, big)


# ------------------------------------------------------------------------------------------
# Regressions found by the properties above (minimal reproductions). Each one fails today.


def test_truncated_npy_header_is_a_verdict_not_a_crash() -> None:
    # inspection._inspect_npy unpacks a header length from fewer than 10 bytes: struct.error.
    for stream in (b"\x93NUMPY\x01", b"\x93NUMPY\x01\x00\x10", b"\x93NUMPY\x02\x00\x01\x00"):
        ins = inspect_bytes(stream)
        assert ins.verdict == "unsafe"


_SKIP_PREFIXES = {
    # INT/LONG literals C accepts (strtol / PyLong_FromString, base 0) and the machine refuses
    "int-space": b"I 5\n0", "int-tab": b"I\t5\n0", "int-hex": b"I0x10\n0",
    "int-underscore": b"I1_0\n0", "int-plus-hex": b"I+0x1\n0", "long-space": b"L 5\n0",
    "long-hex": b"L0x10L\n0",
    # MARK then POP: both CPython unpicklers pop the mark; the machine refuses
    "mark-pop": b"(0",
    # an opcode straddling a FRAME: C does not care; the machine refuses
    "frame-straddle": b"\x95\x01" + b"\x00" * 7,
    # PUT with a leading space: C's PyLong_FromString accepts it
    "put-space": b"Np 1\n0",
}


@pytest.mark.parametrize("prefix", list(_SKIP_PREFIXES.values()), ids=list(_SKIP_PREFIXES))
def test_pickle_that_imports_is_never_skipped(prefix: bytes) -> None:
    # The machine refuses the prefix as malformed before it reaches the import, and
    # inspection._inspect_pickle then calls the file "not a pickle" (verdict skipped, so
    # `safeload scan` reports nothing) -- while pickle.load and torch.load(weights_only=False)
    # import os.system and call it.
    stream = prefix + b"cos\nsystem\n(S'echo pwned'\ntR."
    ins = inspect_bytes(stream)
    assert ins.verdict == "unsafe", (ins.verdict, ins.detail)


def test_import_of_a_non_identifier_module_is_never_skipped(tmp_path: Path) -> None:
    # "GLOBAL operand is not a dotted identifier" is treated as garbage (skipped), but
    # pickle's find_class does __import__("evil-mod"), which imports evil-mod.py from sys.path
    # (e.g. the script's own directory) and runs it.
    import pickle
    import sys

    (tmp_path / "evil-mod.py").write_text("ran = []\nrun = ran.append\n")
    stream = b"cevil-mod\nrun\n(S'x'\ntR."
    sys.path.insert(0, str(tmp_path))
    try:
        pickle.loads(stream)
        assert sys.modules["evil-mod"].ran == ["x"]  # the module really was imported and called
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("evil-mod", None)
    assert inspect_bytes(stream).verdict == "unsafe"


@pytest.mark.parametrize("prefix", [b"U\x02\xc3\xa90", b"S'\xc3\xa9'\n0"])
def test_torch_load_encoding_prefix_is_never_skipped(prefix: bytes) -> None:
    # torch.load passes encoding="utf-8" to the unpickler: an 8-bit string with UTF-8 bytes
    # loads there, while the machine (ASCII, pickle.load's default) refuses it first.
    stream = prefix + b"cos\nsystem\n(S'echo pwned'\ntR."
    assert inspect_bytes(stream).verdict == "unsafe"


def test_machine_raises_only_malformed_for_complex_overflow() -> None:
    # builtins.complex with an int too large for a float: float() raises OverflowError inside
    # the rule, which escapes PickleMachine.run (and kills the conversion worker).
    big = (1 << 2000).to_bytes(252, "little", signed=True)
    stream = b"\x80\x02cbuiltins\ncomplex\n" + op("LONG1", big) + b"\x85R."
    try:
        run = run_machine(stream, False)
    except OverflowError as exc:  # pragma: no cover - the bug
        pytest.fail(f"PickleMachine.run raised {exc!r}")
    assert not run.clean


@pytest.mark.parametrize("stream,why", [
    (b"I010\n.", "C reads 010 as octal 8, Python refuses it, the machine says 10"),
    (b"I08\n.", "both unpicklers refuse it, the machine says 8"),
    (b"L010L\n.", "both unpicklers refuse it, the machine says 10"),
    (b"F1e999\n.", "C raises OverflowError, Python says inf"),
])
def test_machine_refuses_literals_the_unpicklers_disagree_on(stream: bytes, why: str) -> None:
    run = run_machine(stream, False)
    problems = value_oracle(stream, run)
    assert not problems, why + "\n" + "\n".join(problems)


@pytest.mark.parametrize("text", [b"inf", b"-inf", b"nan", b"Infinity", b"-Infinity", b"+nan"])
def test_infinities_spelt_out_load_as_both_unpicklers_read_them(text: bytes) -> None:
    # Protocol 0 writes float('inf') as `Finf`: both unpicklers read it (a real checkpoint
    # holding an infinite loss or a -inf mask value saved with pickle_protocol=0).
    stream = b"F" + text + b"\n."
    run = run_machine(stream, False)
    assert run.clean, run
    assert not value_oracle(stream, run)


def test_unhashable_dict_key_is_not_clean() -> None:
    # {[]: None}: the machine keeps symbolic pairs and passes it; every unpickler raises
    # TypeError (unhashable), and the converted structure cannot be rebuilt either.
    stream = b"\x80\x02}]Ns."
    run = run_machine(stream, False)
    assert not run.clean
