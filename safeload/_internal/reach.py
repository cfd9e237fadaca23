"""Could any unpickler reach an import before these bytes stop parsing? (`would_import`)

One rule at every position: a lenient opcode walk that goes at least as far as CPython's C and
Python unpicklers. It checks framing (a known opcode, complete arguments) and the stack depth,
which both unpicklers enforce the same way whatever the values (the stack is split at MARKs, an
opcode that needs more items than the innermost frame holds is an underflow that ends the
load). Values are never checked: an opcode that fails on a value is walked past. The one
exception is a text argument both unpicklers refuse (`_text_arg_parses`: an unquoted STRING,
`StartFontMetrics 2.0`; a number neither reads, `prefix=${pcfiledir}`): every load ends there.
An argument that crosses the end of a FRAME is read differently by the two unpicklers, so
reaching one counts as reaching an import.
"""

from __future__ import annotations

import os
import pickletools
import re
import struct

from safeload_conversion.budget import CHARGE_EVERY, current
from safeload_conversion.pickle_vm import Buf

PICKLE_OPCODES = frozenset(b"(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrst)uG\x80\x81\x82\x83\x84\x85"
                            b"\x86\x87\x88\x89\x8a\x8bBC\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95"
                            b"\x96\x97\x98")


# Opcodes that import or call: reaching one is what makes a broken pickle dangerous.
# PERSID/BINPERSID are not imports by themselves; a loader with a persistent_load (any
# custom unpickler) goes on past them, so the walk does too.
_IMPORTS = {0x63: "GLOBAL", 0x69: "INST", 0x93: "STACK_GLOBAL", 0x82: "EXT1", 0x83: "EXT2",
            0x84: "EXT4"}
# Opcodes that call a method of an object on the stack, and opcodes that push nothing.
_METHOD_OPS = frozenset(b"aesubRo\x81\x92\x90")
_NO_PUSH_OPS = frozenset(b"pqr01.\x94\x95\x80")
# DICT and FROZENSET hash what they hold: `__hash__`/`__eq__` of an excused import (review X).
_HASHING_OPS = frozenset(b"d\x91")
_CALL_OPS = frozenset(b"Rbo\x81\x92")  # REDUCE, BUILD, OBJ, NEWOBJ, NEWOBJ_EX
_LINE_ARGS = frozenset(b"FILPSVgp")  # one text line
_FIXED_ARGS = {0x4A: 4, 0x4B: 1, 0x4D: 2, 0x68: 1, 0x6A: 4, 0x71: 1, 0x72: 4, 0x47: 8,
               0x80: 1, 0x82: 1, 0x83: 2, 0x84: 4, 0x95: 8}
_LEN_ARGS = {0x54: ("<i", 4), 0x55: ("<B", 1), 0x58: ("<I", 4), 0x8A: ("<B", 1),
             0x8B: ("<i", 4), 0x42: ("<I", 4), 0x43: ("<B", 1), 0x8C: ("<B", 1),
             0x8D: ("<Q", 8), 0x8E: ("<Q", 8), 0x96: ("<Q", 8)}


def _stack_effects() -> dict[int, tuple[int | None, int, int]]:
    """{opcode: (items needed below its MARK or None, items needed, items pushed)}, from
    pickletools' table, which both unpicklers follow."""
    out: dict[int, tuple[int | None, int, int]] = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        if pickletools.markobject in before:
            below = before.index(pickletools.markobject)
            out[ord(op.code.encode("latin-1"))] = (below, below, len(op.stack_after))
        else:
            out[ord(op.code.encode("latin-1"))] = (None, len(before), len(op.stack_after))
    # The table lists no item before a memo store, but both unpicklers store the top item:
    # on an empty stack (or frame) they stop there (`r"""` is LONG_BINPUT: review L).
    for code in b"pqr\x94":
        out[code] = (None, 1, 1)
    return out


_EFFECTS = _stack_effects()
_MARK, _POP, _STOP = 0x28, 0x30, 0x2E


class _Stack:
    """The depth of the innermost frame and of the frames below each MARK."""

    def __init__(self) -> None:
        self.depth, self.below = 0, list[int]()

    def step(self, op: int) -> bool:
        """Apply `op`'s effect; False on an underflow, where every unpickler stops."""
        if op == _MARK:
            self.below.append(self.depth)
            self.depth = 0
            return True
        if op == _POP:  # pops the MARK itself when the frame is empty (C and Python alike)
            if self.depth:
                self.depth -= 1
            elif self.below:
                self.depth = self.below.pop()
            else:
                return False
            return True
        below_mark, need, push = _EFFECTS[op]
        if below_mark is not None:
            if not self.below:
                return False
            self.depth = self.below.pop()
        if self.depth < need:
            return False
        self.depth += push - need
        if op == _STOP:  # the next load starts afresh
            self.depth, self.below = 0, []
        return True

    def can(self, op: int) -> bool:
        """Whether `op` would run here (no underflow), without applying it."""
        probe = _Stack()
        probe.depth, probe.below = self.depth, list(self.below)
        return probe.step(op)


# strtol(s, &end, 0) consuming a whole C string, as _pickle's INT reads it (octal with a
# leading 0, no trailing space)
_STRTOL = re.compile(rb"[ \t\n\r\f\v]*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _an_int(text: bytes, base: int) -> bool:
    try:
        int(text, base)
    except ValueError as exc:  # past the digits limit: a loader may have lifted it
        return "limit" in str(exc)
    return True


def _a_float(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_arg_parses(op: int, line: bytes) -> bool:
    """False only for an argument both unpicklers refuse, so every load ends there: the union
    of what pickle.py reads (the whole line) and what _pickle reads (a C string: it ends at
    the first NUL, so `I\\0...` is INT 0 to strtol and `F\\0` -1.0 to PyOS_string_to_double;
    reviews H and I). Checked against both unpicklers by a fuzzer (2026-12-07)."""
    head = line.split(b"\0", 1)[0]
    if op == 0x53:  # STRING: quoted, the same quote at both ends (both, by length)
        return len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b"'", b'"')
    if op == 0x49:  # INT
        return (head == b"" or line in (b"00", b"01") or bool(_STRTOL.fullmatch(head))
                or _an_int(head, 0) or _an_int(line, 0))
    if op == 0x4C:  # LONG: a trailing L is cut off the line first (both)
        cut = line[:-1] if line.endswith(b"L") else line
        return _an_int(cut.split(b"\0", 1)[0], 0) or _an_int(cut, 0)
    if op == 0x46:  # FLOAT
        return head == b"" or _a_float(head) or _a_float(line)
    if op in (0x67, 0x70):  # GET / PUT: a decimal memo index
        return _an_int(head, 10) or _an_int(line, 10)
    return True  # PERSID (persistent_load takes any text), UNICODE


def _line_end(buf: Buf, pos: int, end: int) -> int | None:
    """Index of the newline ending a text argument, however far (CPython's unpicklers read
    lines of any length: a 64 KiB give-up let a 70 KB line hide an import); None when the
    input ends first."""
    find = getattr(buf, "find", None)
    nl = find(b"\n", pos, end) if find is not None else bytes(buf[pos:end]).find(b"\n")
    if nl < 0:
        return None
    return nl if find is not None else pos + nl


# Names of files that are text by their name (sources, docs, configs, packaging metadata): only
# these may begin with what reads as a GLOBAL/INST of a name with whitespace and still be text.
# An allowlist: a name a loader is given (`weights.bin`, `model`, a stream) gets no such excuse.
TEXT_SUFFIXES = frozenset({
    ".py", ".pyi", ".pyx", ".pxd", ".pxi", ".txt", ".md", ".rst", ".in", ".cfg", ".toml", ".ini",
    ".json", ".jsonl", ".yaml", ".yml", ".sh", ".bash", ".zsh", ".fish", ".bat", ".ps1", ".c",
    ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cu", ".cuh", ".m", ".mm", ".java", ".kt", ".go",
    ".rs", ".rb", ".pl", ".lua", ".r", ".jl", ".js", ".mjs", ".ts", ".tsx", ".html", ".htm",
    ".css", ".xml", ".csv", ".tsv", ".tex", ".cmake", ".mk", ".am", ".ac", ".f", ".f90", ".swift",
    ".scala", ".sql", ".proto", ".ipynb", ".diff", ".patch", ".typed", ".license", ".do", ".afm",
    ".asc", ".svg", ".log", ".pth", ".cff", ".lock", ".tp", ".jinja", ".j2", ".tmpl", ".build"
})
# Legal and project texts by the start of their name: LICENSE.BSD, LICENSE_DOP, COPYING-LGPL
TEXT_NAME_PREFIXES = ("license", "licence", "copying", "copyright", "notice")
# (never a name a checkpoint is saved under: `license_model.pt` is no licence)
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy",
                    ".npz", ".safetensors", ".h5", ".onnx", ".tar", ".zip", ".model", ".dat",
                    ".sav", ".p", ".pk", ".pkz", ".jbl", ".dill", ".mdl", ".ptl", ".weights",
                    ".params", ".hdf5", ".keras", ".gguf", ".msgpack")
TEXT_NAMES = frozenset({
    "license", "licence", "copying", "notice", "authors", "contributors", "readme", "changelog",
    "changes", "history", "makefile", "dockerfile", "containerfile", "manifest", "record",
    "metadata", "wheel", "installer", "requested", "pkg-info", "entry_points", "top_level",
    "gemfile", "rakefile", "procfile", "vagrantfile", "jenkinsfile", "cmakelists"
})


_COMPRESSED = (".gz", ".bz2", ".xz", ".lzma")  # `data.csv.gz`: its text is the inflated bytes


def _base_name(name: str) -> str:
    """The file name, lower case, without a compression suffix (`data.csv.gz`: `data.csv`)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for ext in _COMPRESSED:
        if base.endswith(ext) and "." in base[: -len(ext)]:
            return base[: -len(ext)]
    return base


def text_name(name: str) -> bool:
    """Whether a file of this name may be a text file that begins like a GLOBAL or INST."""
    base = _base_name(name)
    _, dot, suffix = base.rpartition(".")
    # (no excuse for dotfiles: `.pt` and `.gitignore` look alike by name)
    if base.startswith(TEXT_NAME_PREFIXES) and not base.endswith(_WEIGHT_SUFFIXES):
        return True
    return "." + suffix in TEXT_SUFFIXES if dot else base in TEXT_NAMES


# Text no loader is ever given (packaging metadata, legal texts, sources and build files): a
# first line such as `certifi` (top_level.txt), `cython` (requirements.txt) or `cpplint.py and
# its ...` (a LICENSE) reads as the import of one top-level name, `ertifi`, `ython`,
# `pplint`; such a file may also name a module that exists (review V: 8 files of
# site-packages' .dist-info called unsafe, so the pre-commit hook blocked commits). Never a
# name a checkpoint is saved under: `.pth`, `.txt` in general and weight suffixes stay strict.
_QUIET_NAMES = frozenset({
    "record", "metadata", "wheel", "installer", "requested", "pkg-info", "top_level.txt",
    "namespace_packages.txt", "entry_points.txt", "dependency_links.txt", "sources.txt",
    "not-zip-safe", "manifest.in", "cmakelists.txt", "makefile", "setup.cfg", "setup.py",
    "pyproject.toml", "tox.ini", "direct_url.json",
})
_QUIET_PREFIXES = ("license", "licence", "copying", "copyright", "notice", "authors",
                   "contributors", "readme", "changelog", "changes", "requirements")
_QUIET_SUFFIXES = (".py", ".pyi", ".pyx", ".pxd", ".md", ".rst", ".cfg", ".toml", ".ini", ".c",
                   ".h", ".cc", ".cpp", ".cxx", ".hpp", ".cu", ".cuh", ".sh", ".cmake", ".in")
# Importing these runs something visible (a browser, a print, a __main__): never excused.
_IMPORT_SIDE_EFFECTS = frozenset({"antigravity", "this", "__hello__", "__phello__", "__main__",
                                  "__hello_alias__", "__hello_only__", "__phello_alias__"})
# Folders every CPython has on sys.path, whose names are no identifiers (review N).
_REAL_FOLDERS = frozenset({"site-packages", "dist-packages", "lib-dynload"})


# After a legal or project text's prefix: nothing, or a text suffix (`LICENSE`, `LICENSE-MIT`,
# `LICENSE.txt`, `COPYING.LIB`, `requirements-dev.txt`); not `license_plate.sav` (review X).
_TEXT_AFTER_PREFIX = frozenset({*_QUIET_SUFFIXES, ".txt", ".bsd", ".mit", ".apache", ".gpl",
                                ".lgpl", ".mpl", ".psf", ".lib", ".docs", ".python"})


def quiet_text_name(name: str) -> bool:
    """Whether this name is text no loader is given (see `_QUIET_NAMES`)."""
    base = _base_name(name)
    if base.endswith(_WEIGHT_SUFFIXES):
        return False
    prefix = next((p for p in _QUIET_PREFIXES if base.startswith(p)), None)
    if prefix is not None:
        rest = base[len(prefix):]
        return "." not in rest or "." + rest.rpartition(".")[2] in _TEXT_AFTER_PREFIX
    return base in _QUIET_NAMES or base.endswith(_QUIET_SUFFIXES)


def text_level(name: str) -> int:
    """0: a name a loader may be given; 1: text by its name (`text_name`); 2: text no loader
    is ever given (`quiet_text_name`). The `text_ok` of `inspection.inspect_bytes`."""
    if not text_name(name):
        return 0
    return 2 if quiet_text_name(name) else 1


def _quiet_excuse(module: bytes) -> bool:
    """In a quiet text file: a line whose imports stop at one top-level name (the next part
    holds whitespace or punctuation, or there is none), or start with a folder no CPython has
    (`ertifi-2026.10.19.post1.dist-info/RECORD,,`): what a text's first word reads as. A
    leading dot (review Q), a chain of modules (`idlelib.idle`) or a module that acts on
    import stays an import; a call or a method of what it imports is one anyway."""
    try:
        parts = module.decode("utf-8").split(".")
    except UnicodeDecodeError:
        return False
    top = parts[0]
    if not top or top in _IMPORT_SIDE_EFFECTS or top in _REAL_FOLDERS:
        return False
    if not top.isidentifier():
        # A folder by this name on no sys.path entry here, and the chain fails later.
        return not _on_sys_path(top) and any(not _file_name_like(p) for p in parts[1:])
    # One word: nothing more, or a next part no installed module's file name has (review X:
    # `pip.__pip-runner__` is a file of pip, and its import runs pip under -O).
    return len(parts) == 1 or not _file_name_like(parts[1])


def _file_name_like(part: str) -> bool:
    """Made of what installed modules' and folders' names are made of."""
    return bool(part) and all(c.isalnum() or c == "_" or c in _FOLDER_NAME_CHARS for c in part)


def _on_sys_path(name: str) -> bool:
    """Whether some sys.path entry holds a folder or file of this exact name (`pandas-stubs`)."""
    import sys

    for entry in sys.path:
        try:
            if os.path.lexists(os.path.join(entry or ".", name)):
                return True
        except (OSError, ValueError):
            return True  # cannot tell: no excuse
    return False


def importable(module: bytes) -> bool:
    """Whether `find_class` given this module text could import anything. Both unpicklers
    decode it as UTF-8 first, and `__import__("")` fails before any import. Anything else
    may import (reviews H and I): a slash (zipimport finds `pkg/evil` in a zip on sys.path),
    a leading dot (`.evil` runs `evil.py` before the empty name fails), a NUL after a name
    (the frozen and builtin importers compare C strings: `os\\0` is `os`). Only a NUL with
    no module name before it imports nothing: no file name holds a NUL, and the frozen and
    builtin modules are named by identifiers (an unpadded safetensors length byte `c`)."""
    try:
        text = module.decode("utf-8")
    except UnicodeDecodeError:
        return False
    top = text.split(".", 1)[0]  # imported first, whatever follows (`__cos.\\0` imports __cos)
    if "\0" in top:
        return top.split("\0", 1)[0].isidentifier()
    return bool(text)


# Besides identifiers, what folder names on a sys.path are made of: `site-packages` and
# `lib-dynload` import as namespace packages on every CPython (review N), a project folder
# may be `my-tools` or `g++`. Not a slash: the path finder looks names up in directory
# listings, which never hold one (zipimport might, in a zip on sys.path; and a call or a method
# of what an excused line imports still counts).
_FOLDER_NAME_CHARS = frozenset("-+@~")


def _top_is_identifier(module: bytes) -> bool:
    """Whether `__import__` could reach a module by this name: `os`, `evilmod.x y` (review J:
    the top is imported first), `site-packages._distutils_hack` (through folders on sys.path,
    review N), not `mport os`, `ancer,population` or `certifi-2024.8.30.dist-info/RECORD,,`:
    before any module, a part with whitespace or punctuation no folder name has."""
    try:
        parts = module.decode("utf-8").split(".")
    except UnicodeDecodeError:
        return False
    for i, part in enumerate(parts):
        if i == 0 and not part and len(parts) > 1:
            continue  # `.x`: no parent to import, and the path finder looks `x` up (review Q)
        if part.isidentifier():
            return True  # a module: imported (its code runs) before any later part fails
        if not part or not all(c.isalnum() or c == "_" or c in _FOLDER_NAME_CHARS
                               for c in part):
            return False  # no folder by this name: the import fails here
    return True  # folders all the way: a namespace package


_BIN_MEMO = frozenset(b"hjqr")  # BINGET, LONG_BINGET, BINPUT, LONG_BINPUT


def _text_indices(line: bytes) -> set[int]:
    """The memo index a text GET/PUT names to each unpickler: pickle.py reads the whole line,
    _pickle a C string (up to the first NUL)."""
    out = set()
    for text in (line, line.split(b"\0", 1)[0]):
        try:
            out.add(int(text, 10))
        except ValueError:
            pass
    return out


_FRAME_CROSSED = "(undecided: an argument crosses a frame's end)"


def would_import(buf: Buf, limit: int = 64 << 20, *, extensions: bool = True,
                 persistent_calls: bool = False, text_start: bool = False,
                 after_stop: bool = False, quiet: bool = False) -> tuple[int, str] | None:
    """Could ANY unpickler reach an import before these bytes stop parsing?

    A GLOBAL or INST is an import (INST imports before it looks for its MARK in pickle.py)
    when its module text is `importable`, however long its line, and also when the line runs
    to the end without a newline (pickle.py's readline returns the rest, and the import takes
    all but its last byte). `text_start` (a file whose name says text, `text_name`): a
    GLOBAL or INST whose top module is no identifier is taken as text (`import torch`,
    `include LICENSE`, `cancer,population`), not as the import of `mport torch`; the walk goes
    on, and a call opcode after it counts as an import. Returns the
    offset and name of the first import opcode reached, or None. Past `limit` well-formed
    opcodes it gives up and answers as if an import were reached (fail closed: such a file is
    refused, never skipped).

    With `persistent_calls`, a method opcode (APPEND, BUILD, REDUCE, ...) after a persistent id
    and at least one pushed value counts too: the loader's `persistent_load` made that object,
    and the unpickler would call a method of it with a value from the file.

    `after_stop`: these bytes follow a STOP, so one Unpickler reading on has a memo they
    cannot show (review R: `g0` after a first pickle's `p0` does not end that load).
    `quiet` (with `text_start`: `quiet_text_name`): `_quiet_excuse` lines are text too.
    """
    pos, end = 0, len(buf)
    # No text begins with PROTO (0x80 starts no UTF-8 character): a binary pickle gets no
    # excuse, however the file is named (review Q: a cut protocol-4 `model.pth`).
    text_start = text_start and buf[:1] != b"\x80"
    persid_then_push: bool | None = None  # None: no persistent id yet
    pushed = False  # BINPERSID pops its id: on an empty stack the unpickler stops there
    stack = _Stack()
    budget, steps = current(), 0
    frame_end: int | None = None
    excused: int | None = None  # where a text first line was taken for text, not an import
    # The memo indices written so far (None: not known exactly, after a STOP or a text PUT
    # two readers read differently): a GET of any other index ends every load (review L).
    memo: set[int] | None = None if after_stop else set()
    while pos < end:
        # Opcodes, not offsets: one BINBYTES may skip most of a big file (a bz2 header reads
        # as BINBYTES of ~825 MB), and what follows it is walked all the same.
        if steps >= limit:
            return pos, "(undecided: too long to walk)"
        steps += 1
        if budget is not None and steps % CHARGE_EVERY == 0:
            budget.charge_ops(CHARGE_EVERY)  # the same opcodes budget as the strict machine
        op = buf[pos]
        at = pos
        pos += 1
        if op not in PICKLE_OPCODES:
            return None
        if excused is not None and op in _CALL_OPS and stack.can(op):
            # (an underflow ends every load before the call: `R` in a LICENSE's prose)
            return excused, "(a call of what a text first line imports)"
        if excused is not None and (op in _METHOD_OPS or op in _HASHING_OPS) \
                and stack.can(op):
            # APPEND, SETITEM, ... call a method of their target: of an excused import too
            # (review N: `sys.path_hooks.append(os.system)` through excused lines, no call op)
            return excused, "(a method of what a text line imports)"
        if persistent_calls:
            if op in _METHOD_OPS and persid_then_push:
                return at, "(a method of a persistent_load result)"
            if op == 0x50 or (op == 0x51 and pushed):  # PERSID / BINPERSID
                # (a later id never clears an earlier one: BUILD may apply a persistent
                # object as the state of another)
                persid_then_push = persid_then_push or False
            elif op not in _NO_PUSH_OPS and op not in _METHOD_OPS:
                pushed = True
                if persid_then_push is False:
                    persid_then_push = True
        if op in (0x63, 0x69):  # GLOBAL / INST: two text lines
            nl = _line_end(buf, pos, end)
            nl2 = _line_end(buf, nl + 1, end) if nl is not None else None
            if frame_end is not None and at < frame_end <= (nl2 if nl2 is not None else end):
                return at, _FRAME_CROSSED
            module = bytes(buf[pos:nl] if nl is not None else buf[pos:end - 1])
            if not importable(module):
                return None  # every unpickler's import fails: the load ends here
            # Any name is an import (`__import__("evil mod")` finds `evil mod.py`), except, in a
            # file named as text, a line whose top module is no identifier (`lass A(B): ...`
            # in a stub, `tted provided that` mid-LICENSE, `certifi/x.py,sha256=` in a RECORD:
            # review L); even then the walk goes on as if it had been imported (a payload may
            # follow it: review H), and a call of it is an import.
            if not text_start or b"\0" in module or (
                    _top_is_identifier(module) and not (quiet and _quiet_excuse(module))):
                return at, _IMPORTS[op]
            if nl2 is None:
                return None
            pos = nl2 + 1
            excused = at if excused is None else excused  # text: until something calls it
            if not stack.step(op):
                return None
            if op == 0x69:  # INST with its MARK: pickle.py calls what it imported
                return at, "(a call of what a text line imports)"
            continue
        if op == 0x93 and stack.depth < 2:  # STACK_GLOBAL pops module and name first
            return None
        if op in _IMPORTS:
            # EXT* imports only what the process registered with copyreg (nothing, normally);
            # `extensions=False` treats them as the lookup failure they nearly always are.
            return (at, _IMPORTS[op]) if extensions or op == 0x93 else None
        if op in _LINE_ARGS:
            nl = _line_end(buf, pos, end)
            if frame_end is not None and at < frame_end <= (nl if nl is not None else end):
                return at, _FRAME_CROSSED  # (before the STRING check: _pickle reads another)
            if nl is None or (op != 0x50 and op != 0x56
                              and not _text_arg_parses(op, bytes(buf[pos:nl]))):
                return None  # every unpickler's load ends at this argument
            if op in (0x67, 0x70) and memo is not None:  # GET / PUT
                keys = _text_indices(bytes(buf[pos:nl]))
                if op == 0x67 and not keys & memo:
                    return None
                if op == 0x70:
                    memo = memo | keys if len(keys) == 1 else None
            pos = nl + 1
        elif op in _FIXED_ARGS:
            if op in _BIN_MEMO and memo is not None and pos + _FIXED_ARGS[op] <= end:
                key = buf[pos] if _FIXED_ARGS[op] == 1 else struct.unpack_from("<I", buf, pos)[0]
                if op in (0x68, 0x6A) and key not in memo:  # BINGET / LONG_BINGET
                    return None
                memo.add(key)  # (a GET's key is there already)
            pos += _FIXED_ARGS[op]
        elif op in _LEN_ARGS:
            fmt, size = _LEN_ARGS[op]
            if pos + size > end:
                return None
            (n,) = struct.unpack_from(fmt, buf, pos)
            pos += size + max(n, 0)
        if frame_end is not None and at < frame_end < pos:
            # An argument across a frame's end: _pickle reads the part inside the frame from
            # its buffer and the rest from the file (a line loses its head), pickle.py
            # refuses. No pickler writes one; the readings differ, so fail closed (review I).
            return at, _FRAME_CROSSED
        if op == _STOP and frame_end is not None and pos < frame_end:
            # A STOP before its frame's end: the next load from the same file starts after the
            # frame, which both unpicklers read whole, not here (review J)
            return at, _FRAME_CROSSED
        if op == 0x95 and pos <= end:
            if frame_end is not None and at < frame_end:
                # A frame inside a frame: pickle.py refuses it, _pickle may drop the rest of
                # the outer one and read the inner from the file (review J)
                return at, _FRAME_CROSSED
            frame_end = pos + struct.unpack_from("<Q", buf, pos - 8)[0]
        if not stack.step(op):
            return None
        if op == 0x94 and memo is not None:  # MEMOIZE: the next index, len(memo)
            memo.add(len(memo))
        elif op == _STOP:
            memo = None  # one Unpickler reading on keeps its memo, a new one starts empty
    return None


__all__ = ["PICKLE_OPCODES", "would_import"]
