"""The conversion engine: pickles become safetensors in the sandboxed child; the parent never
unpickles.

The parent hashes the bytes it holds, hands the child the open descriptor, and on return
re-validates the output from scratch: strict header check, the child's digest of the input equal
to the parent's, and every written tensor's digest equal to what the child read. Results are
cached under the converted store, keyed by the source digest plus converter and allowlist
versions (tightening the rules invalidates old entries).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload_conversion import __version__ as CONVERTER_VERSION
from safeload_conversion.pickle_vm import allowlist
from safeload_conversion.protocol import OUTPUT_NAME
from safeload_conversion.sandbox_layers import LAYERS, LayerReport, support_report

from safeload._internal import convert_worker, expected, paths, strictjson
from safeload._internal.atomic import copy_atomic, move_into_place
from safeload._internal.opened import Held, OpenedFile
from safeload._internal.private_dir import others_could_replace
from safeload._internal.safetensors_check import SafetensorsHeader, parse_header
from safeload._internal.text import get_logger, safe_text
from safeload.errors import ConversionError, MalformedFileError, UnsafePathError

_logger = get_logger(__name__)

REPORT_NAME = "conversion.json"
WORKER_MODULE = "safeload_conversion"


@dataclass(frozen=True)
class Converted:
    """A validated conversion: the safetensors path, its header and the child's report."""

    path: Path
    header: SafetensorsHeader
    report: dict[str, Any]
    source_sha256: str
    cache_hit: bool
    # Strict mode: the private copy of the output that was validated, which the tensors are
    # built from (the store entry is never read again by path).
    data: bytearray | None = None

    def output_record(self) -> tuple[str, str, int]:
        """(path, sha256, size) of the safetensors file, as the parent measured it."""
        return (str(self.path), str(self.report.get("output_sha256", "")),
                int(self.report.get("output_size", 0)))


def _cache_key(source_sha256: str) -> str:
    return f"{source_sha256}-c{CONVERTER_VERSION}-a{allowlist().version}"


def _warn_unsafe(flag: bool) -> None:
    if flag:
        _logger.warning("unsafe_allow_unsandboxed: a pickle may be converted with no isolating "
                        "sandbox layer where none is available")


def _private_dir(path: Path) -> Path:
    """Create (0700) or check a directory: never one that others may write to."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or (
            hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise ConversionError(f"{path}: the converted store is writable by others or not yours",
                              hint=f"chmod 700 {path} (or remove it; it is regenerated)")
    # A folder above it that others control lets them swap the whole store (review P).
    above = others_could_replace(path / "entry")
    if above is not None:
        raise ConversionError(f"{path}: the converted store is not private: {above[0]}",
                              hint=f"{above[1]}, or set SAFELOAD_HOME to a folder of your own")
    _sweep_stale(path)
    return path


STALE_WORK_SECONDS = 2 * 86400  # far past any conversion's wall-clock bound
_swept: set[Path] = set()


def _sweep_stale(store: Path) -> None:
    """Once per process: work folders a killed load left in the store (review U: SIGTERM
    during a conversion left `.safeload-convert-*` behind, never removed)."""
    if store in _swept:
        return
    _swept.add(store)
    now = time.time()
    try:
        entries = list(os.scandir(store))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(".safeload-convert-"):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_WORK_SECONDS \
                    and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


PARALLEL_HASH_MIN = 4 << 20  # outputs from this size are hashed on the other core


def _validate_output(out: Path, source: Held, source_sha256: str, *, measure: bool,
                     reading: Any = None
                     ) -> tuple[SafetensorsHeader, str | None, bytearray | None]:
    """Check the child's file against the output the parent derives from the held source
    (`expected.py`; `reading`: the parent's inspection of those bytes): nothing the child
    reported is believed. With `measure`, also the file's sha256 (for the provenance record),
    computed on the other core while the bytes are compared. A private source (strict mode)
    gets a private copy of the output, validated and returned: what is used is what was
    compared, whatever a writer of the store entry does (a dirty shared mapping changes no
    stamp)."""
    # The child's own file: no link, one name (review W: a link to a file it kept, or a hard
    # link its report would be written through).
    try:
        produced = OpenedFile.open(out, produced=True)
    except (OSError, UnsafePathError) as exc:
        raise _mismatch(out, f"not one plain file: {exc}") from None
    with produced as f:
        if source.private:
            f.copy_privately()
        buf = f.mapping()
        data = buf if isinstance(buf, bytearray) else None
        try:
            header = parse_header(buf, str(out))
        except MalformedFileError as exc:
            raise _mismatch(out, f"not a valid safetensors file: {exc}") from None
        def check() -> None:
            try:
                src = source.mapping()
                expected_output = expected.derive(src, source_sha256, reading)
                expected.compare(expected_output, buf, src)
            except expected.OutputMismatch as exc:
                raise _mismatch(out, str(exc)) from None

        if not measure or f.size < PARALLEL_HASH_MIN:  # a thread costs more than a small hash
            check()
            return header, f.sha256() if measure else None, data
        with ThreadPoolExecutor(1) as pool:
            whole: Future[str] = pool.submit(f.sha256)
            check()
            return header, whole.result(), data


def _write_report(work: Path, report: dict[str, Any]) -> None:
    """The report beside the validated output, in a folder the child wrote: nothing it left
    there stays (review W: a planted `conversion.json` hard link to the output)."""
    for entry in os.listdir(work):
        if entry != OUTPUT_NAME:
            victim = work / entry
            if victim.is_dir() and not victim.is_symlink():
                shutil.rmtree(victim, ignore_errors=True)
            else:
                victim.unlink(missing_ok=True)
    fd = os.open(work / REPORT_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(report))


def _mismatch(out: Path, detail: str) -> ConversionError:
    return ConversionError(
        f"{out}: the converter's output did not match its input ({detail}); it was discarded",
        hint="convert again; if this repeats, the checkpoint may be attacking the converter: "
             "do not use it")


_support_memo: tuple[Any, dict[str, Any]] | None = None


def _support() -> dict[str, Any]:
    """`support_report()`, read once per process (seven /proc files: more than a small
    conversion costs); asked again if the function was replaced (tests)."""
    global _support_memo
    if _support_memo is None or _support_memo[0] is not support_report:
        _support_memo = (support_report, support_report())
    return _support_memo[1]


def _check_layers(name: str, layers: LayerReport) -> None:
    """What the parent can check of the child's sandbox claim, which it cannot observe.

    Acceptance never rests on it: the isolating-layer gate ran in the child before any input
    byte was read (a lie told later comes after the gate), and the output is checked byte for
    byte. A claim this machine cannot back (a layer its kernel lacks, an unknown layer, a
    layer both applied and missing) is refused, so the record never carries it.
    """
    applied = set(layers.applied)
    support = _support()
    impossible = (applied - set(LAYERS)) | (applied & set(layers.missing))
    if support.get("supported_arch") is None:
        impossible |= applied & {"landlock", "seccomp"}
    else:
        if support["landlock"]["abi"] is None:
            impossible |= applied & {"landlock"}
        if not support["seccomp"]["available"]:
            impossible |= applied & {"seccomp"}
    if impossible:
        raise ConversionError(
            f"{name}: the converter's output did not match its input: it claims sandbox "
            f"layers this machine cannot provide ({safe_text(', '.join(sorted(impossible)))})",
            hint="do not use this checkpoint; the converter may have been attacked")
    _warn_weak(layers)


_warned_weak: set[str] = set()


def _warn_weak(layers: LayerReport) -> None:
    """Once per process and missing layer: what a converter compromised by its input could do
    here (review W: without Landlock it read ~/.ssh and wrote site-packages, and nothing said
    so). Network and syscall layers do not isolate files; seccomp is what stops a fork."""
    for layer, means in (("landlock", "read and write every file this user can (keys, "
                                      "site-packages, ~/.bashrc)"),
                         ("seccomp", "start processes that outlive it and open sockets")):
        if layer in layers.applied or layer in _warned_weak:
            continue
        _warned_weak.add(layer)
        _logger.warning("sandbox: the pickle converter ran without %s (%s): a converter "
                        "compromised by a hostile pickle could %s. Its output is still "
                        "checked byte for byte against the source", layer,
                        safe_text(layers.missing.get(layer, "not applied")), means)


def converted_path(source_sha256: str) -> Path | None:
    """Where the converted store keeps the conversion of this source digest, if it has one.

    A cheap existence check (no validation) for listings; loads validate the entry.
    """
    out = paths.converted_dir() / _cache_key(source_sha256) / OUTPUT_NAME
    return out if out.is_file() else None


# Store entries this process validated, by the entry files' and the source's inode state (the
# verification cache's threat model: any write to either changes its ctime). A repeat load of
# the same checkpoint then skips re-deriving and comparing every byte. (Rewriting an entry
# within one timestamp tick while keeping its size takes a writer with the user's own rights,
# which could as well change the mapped file after any check.)
_validated: dict[tuple[Any, ...], Converted] = {}
_VALIDATED_MAX = 4096


def _entry_state(final: Path, held: Held, source_sha256: str) -> tuple[Any, ...] | None:
    source = held.memo_key
    if source is None:
        return None
    out = []
    for name in (OUTPUT_NAME, REPORT_NAME):
        st = os.stat(final / name, follow_symlinks=False)
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return (str(final), source_sha256, source, *out)


def _remember_state(state: tuple[Any, ...], hit: Converted) -> None:
    if len(_validated) >= _VALIDATED_MAX:
        _validated.clear()
    _validated[state] = hit


def _remember(final: Path, held: Held, source_sha256: str, hit: Converted) -> None:
    """A fresh entry, validated before it was moved into the store: its first hit in this
    process need not compare it again (a write after this changes its state)."""
    try:
        state = _entry_state(final, held, source_sha256)
    except OSError:
        return
    if state is not None:
        _remember_state(state, hit)


def _cached(final: Path, held: Held, source_sha256: str,
            reading: Any = None) -> Converted | None:
    """The store entry `final`, validated against the held source exactly as a fresh output
    is (an earlier child may have lied); a damaged or lying entry is removed and regenerated."""
    if not (final / OUTPUT_NAME).is_file():
        return None
    try:
        state = _entry_state(final, held, source_sha256)
        # Strict mode takes no stamp-keyed shortcut: stamps miss a dirty shared mapping.
        seen = _validated.get(state) if state is not None and not held.private else None
        if seen is not None:
            return seen
        report = strictjson.loads((final / REPORT_NAME).read_bytes())
        if not isinstance(report, dict):
            raise ValueError("report is not an object")
        header, _, data = _validate_output(final / OUTPUT_NAME, held, source_sha256,
                                           measure=False, reading=reading)
        hit = Converted(final / OUTPUT_NAME, header, report, source_sha256, True, data)
        if state is not None and _entry_state(final, held, source_sha256) == state:
            _remember_state(state, hit)
        return hit
    except (OSError, ValueError, ConversionError) as exc:
        _logger.warning("discarding a damaged converted entry %s: %s", final, exc)
        shutil.rmtree(final, ignore_errors=True)
        return None


def existing_output(out: Path, held: Held, source_sha256: str) -> Converted | None:
    """A file already at `out` (a bulk rerun's output), if it is exactly the conversion of the
    held source (derived and compared by the parent, as a fresh output is); else None."""
    try:
        header, sha, _ = _validate_output(out, held, source_sha256, measure=True)
        size = os.stat(out).st_size
    except (OSError, ConversionError) as exc:
        _logger.warning("%s does not match its source; converting again: %s", out, exc)
        return None
    # Not converted by this run: no sandbox layers to report for it.
    report: dict[str, Any] = {"source_sha256": source_sha256, "output_sha256": sha,
                              "output_size": size, "layers": {"applied": []}, "reused": True}
    return Converted(out, header, report, source_sha256, True)


def wall_timeout(size: int) -> float:
    """Seconds a conversion of `size` input bytes may take, wall clock: a child that sleeps
    uses no CPU, so RLIMIT_CPU never ends it (review W: an hour on a 1 KB input)."""
    return max(120.0, 240.0 * size / (1 << 30))


def convert_opened(name: str, opened: Held, *, timeout: float | None = None,
                   unsafe_allow_unsandboxed: bool = False, destination: Path | None = None,
                   overwrite: bool = False, source_sha256: str | None = None,
                   reading: Any = None) -> Converted:
    """Convert (or find in the cache) the checkpoint held by `opened`.

    `reading`: the caller's clean inspection of the same held bytes (`Inspection.checkpoint`),
    reused to derive the expected output instead of walking the pickle again.

    With `destination`, the child writes next to it and the validated file is renamed into
    place (no second copy of a multi-GB file); otherwise the result goes to the cache.
    """
    _warn_unsafe(unsafe_allow_unsandboxed)
    from safeload._internal.sandbox import Limits, run_worker

    if destination is not None:
        # The child runs in its work folder: a relative output means the caller's cwd.
        destination = Path(os.path.abspath(destination))
    size = opened.size
    timeout = wall_timeout(size) if timeout is None else timeout
    if source_sha256 is None:  # the caller verified it already, from the same handle
        source_sha256 = opened.sha256()
    store = _private_dir(paths.converted_dir())
    final = store / _cache_key(source_sha256)
    if destination is not None and destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists (use --overwrite)")
    hit = _cached(final, opened, source_sha256, reading)
    if hit is not None:
        if destination is not None:
            copy_atomic(hit.path, destination, overwrite=overwrite)
            return Converted(destination, hit.header, hit.report, source_sha256, True)
        return hit

    parent = destination.parent if destination is not None else store
    work = Path(tempfile.mkdtemp(prefix=".safeload-convert-", dir=parent))
    fd, close_fd = opened.input_fd()
    try:
        try:
            # Small inputs bound for the store go through the process's long-lived worker.
            result = convert_worker.try_convert(
                fd, size, work, store, timeout=timeout,
                allow_unsandboxed=unsafe_allow_unsandboxed) if destination is None else None
            if result is None:
                result = run_worker(
                    WORKER_MODULE, [str(fd), str(work)], pass_fds=(fd,), output_dir=work,
                    timeout=timeout, limits=Limits.for_input(size),
                    allow_unsandboxed=unsafe_allow_unsandboxed,
                    # No fsync: a file for the user is written like cp writes it, and a store
                    # entry torn by a power cut fails the byte comparison every hit makes.
                    extra_env={"SAFELOAD_CONVERT_FSYNC": "0"})
        except ConversionError as exc:  # naming the user's file (review L)
            if str(exc).startswith(f"{name}: "):
                raise
            named = type(exc)(f"{name}: {exc}", hint=exc.hint, returncode=exc.returncode,
                              stderr=exc.stderr)
            raise named from None
        report = dict(result.result)
        report["layers"] = result.layers.to_dict()
        if report.get("source_sha256") != source_sha256:  # a hint: only ever a refusal
            raise ConversionError(f"{name}: the worker converted different bytes than were "
                                  "verified (digest mismatch)")
        _check_layers(name, result.layers)
        header, report["output_sha256"], data = _validate_output(
            work / OUTPUT_NAME, opened, source_sha256, measure=True, reading=reading)
        report["output_size"] = (work / OUTPUT_NAME).stat().st_size
        if destination is not None:
            os.chmod(work / OUTPUT_NAME, 0o644)
            move_into_place(work / OUTPUT_NAME, destination, overwrite=overwrite)
            shutil.rmtree(work, ignore_errors=True)
            return Converted(destination, header, report, source_sha256, False)
        _write_report(work, report)
        try:
            os.rename(work, final)
        except OSError:  # a concurrent conversion won the race: use its entry, checked
            shutil.rmtree(work, ignore_errors=True)
        else:  # ours, validated above in a folder only this process writes
            _remember(final, opened, source_sha256,
                      Converted(final / OUTPUT_NAME, header, report, source_sha256, True))
            return Converted(final / OUTPUT_NAME, header, report, source_sha256, False, data)
        hit = _cached(final, opened, source_sha256, reading)
        if hit is None:
            raise ConversionError(f"{name}: the converted entry vanished from the store")
        return Converted(hit.path, hit.header, hit.report, source_sha256, False, hit.data)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if close_fd:
            os.close(fd)



def convert_many(items: Sequence[tuple[str, Held]], *, timeout: float | None = None,
                 unsafe_allow_unsandboxed: bool = False,
                 source_sha256s: Sequence[str | None] | None = None,
                 progress: Callable[[int], None] | None = None) -> list[Converted | Exception]:
    """Convert several checkpoints (one model's files) in ONE sandboxed child.

    `items` are (name, opened) pairs; `source_sha256s[i]`, when given, is the digest the caller
    already verified from the same handle. Inputs already in the converted store are not sent to
    the child; identical inputs are converted once. Each output is validated exactly as
    `convert_opened` validates one (the child's digest of its input equal to ours, every tensor's
    digest) and moved into the store.

    Returns one entry per item, in order: its `Converted`, or the exception it met. A failure of
    the whole child (no sandbox, timeout, crash) is the entry of every item it was converting.
    `progress(bytes_written)` is called from a watcher thread while the child runs.
    """
    _warn_unsafe(unsafe_allow_unsandboxed)
    shas = list(source_sha256s) if source_sha256s is not None else [None] * len(items)
    if len(shas) != len(items):
        raise ValueError("source_sha256s must have one entry per item")
    store = _private_dir(paths.converted_dir())
    results: list[Converted | Exception | None] = [None] * len(items)
    wanted: dict[str, list[int]] = {}  # digest -> items with that content
    for i, (_, opened) in enumerate(items):
        sha = shas[i]
        if sha is None:
            sha = opened.sha256()
        wanted.setdefault(sha, []).append(i)
    todo: list[tuple[str, int]] = []  # (digest, first item with it)
    for sha, idx in wanted.items():
        hit = _cached(store / _cache_key(sha), items[idx[0]][1], sha)
        if hit is not None:
            for i in idx:
                results[i] = hit
        else:
            todo.append((sha, idx[0]))
    if todo:
        for sha, conv in _convert_batch(items, todo, store, timeout=timeout,
                                        unsafe_allow_unsandboxed=unsafe_allow_unsandboxed,
                                        progress=progress):
            for i in wanted[sha]:
                results[i] = conv
    out: list[Converted | Exception] = []
    for r in results:
        assert r is not None  # every digest got a cache hit or a batch result
        out.append(r)
    return out


def _convert_batch(items: Sequence[tuple[str, Held]], todo: list[tuple[str, int]],
                   store: Path, *, timeout: float | None, unsafe_allow_unsandboxed: bool,
                   progress: Callable[[int], None] | None
                   ) -> list[tuple[str, Converted | Exception]]:
    from safeload._internal.sandbox import Limits, run_worker

    sizes = [items[i][1].size for _, i in todo]
    # Inputs are converted one after another: memory and file size are bounded by the largest,
    # CPU time by the sum.
    big, total = Limits.for_input(max(sizes)), Limits.for_input(sum(sizes))
    limits = Limits(address_space=big.address_space, cpu_seconds=total.cpu_seconds,
                       file_size=big.file_size, open_files=max(big.open_files, len(todo) + 64))
    if timeout is None:
        timeout = wall_timeout(sum(sizes)) * 2
    work = Path(tempfile.mkdtemp(prefix=".safeload-convert-", dir=store))
    fds: list[tuple[int, bool]] = []
    stop = threading.Event()
    watcher: threading.Thread | None = None
    try:
        for j, (_, i) in enumerate(todo):
            fds.append(items[i][1].input_fd())
            (work / str(j)).mkdir()
        if progress is not None:
            watcher = threading.Thread(target=_watch_bytes, args=(work, stop, progress),
                                       name="safeload-convert-progress", daemon=True)
            watcher.start()
        in_fds = [fd for fd, _ in fds]
        try:
            result = run_worker(WORKER_MODULE, [str(work), "--batch", *map(str, in_fds)],
                         pass_fds=tuple(in_fds), output_dir=work, timeout=timeout,
                         limits=limits, allow_unsandboxed=unsafe_allow_unsandboxed,
                         extra_env={"SAFELOAD_CONVERT_FSYNC": "0"})  # hits compare every byte
        except ConversionError as exc:
            return [(sha, exc) for sha, _ in todo]
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        reported = result.result.get("results")
        if not isinstance(reported, list) or len(reported) != len(todo):
            bad = ConversionError("the conversion worker's batch result does not match its "
                                  "inputs")
            return [(sha, bad) for sha, _ in todo]
        out: list[tuple[str, Converted | Exception]] = []
        for j, ((sha, i), one) in enumerate(zip(todo, reported, strict=True)):
            try:
                out.append((sha, _accept(items[i], one, work / str(j), store, sha,
                                           result.layers)))
            except (ConversionError, OSError) as exc:
                out.append((sha, exc))
        return out
    finally:
        stop.set()
        for fd, close in fds:
            if close:
                os.close(fd)
        shutil.rmtree(work, ignore_errors=True)  # accepted outputs were renamed out already


def _accept(item: tuple[str, Held], one: object, sub: Path, store: Path, sha: str,
            layers: LayerReport) -> Converted:
    """Validate one batch output and move it into the store."""
    name, held = item
    if not isinstance(one, dict):
        raise ConversionError(f"{name}: the conversion worker's result is not an object")
    if one.get("ok") is not True:
        err = one.get("error")
        kind = safe_text(err.get("kind", "")) if isinstance(err, dict) else ""
        msg = safe_text(err.get("message", "")) if isinstance(err, dict) else ""
        what = "refused it" if kind == "refused" else "failed"
        raise ConversionError(f"{name}: the converter {what}: {msg or kind or 'no reason'}")
    report = {str(k): v for k, v in one.items()}
    report["layers"] = layers.to_dict()
    if report.get("source_sha256") != sha:  # a hint only: a refusal, never an acceptance
        raise ConversionError(f"{name}: the worker converted different bytes than were "
                              "verified (digest mismatch)")
    _check_layers(name, layers)
    _, report["output_sha256"], _ = _validate_output(sub / OUTPUT_NAME, held, sha,
                                                     measure=True)
    report["output_size"] = (sub / OUTPUT_NAME).stat().st_size
    (sub / REPORT_NAME).write_text(json.dumps(report))
    final = store / _cache_key(sha)
    try:
        os.rename(sub, final)
    except OSError:  # a concurrent conversion won the race: use its entry
        pass
    hit = _cached(final, held, sha)
    if hit is None:
        raise ConversionError(f"{name}: the converted entry vanished from the store")
    return Converted(hit.path, hit.header, hit.report, sha, False, hit.data)


def _watch_bytes(work: Path, stop: threading.Event, progress: Callable[[int], None]) -> None:
    """Report how many bytes the child has written so far (its outputs, partial ones included)."""
    while not stop.wait(0.5):
        total = 0
        try:
            for sub in os.scandir(work):
                if sub.is_dir(follow_symlinks=False):
                    for f in os.scandir(sub.path):
                        total += f.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # an entry was renamed away mid-scan: try again next tick
        progress(total)


def load_converted(conv: Converted, *, map_location: Any, mmap: bool | None,
                   source: str | None = None) -> Any:
    """What torch.load returns for the converted checkpoint (tensors and structure);
    `source`, the user's file, is what errors about its values name."""
    from safeload._internal.tensors import load_safetensors_buffer

    if conv.data is not None:  # strict mode: the very bytes that were validated
        return load_safetensors_buffer(conv.data, str(conv.path), map_location=map_location,
                                       copy=(mmap is False), source=source)
    with OpenedFile.open(conv.path) as f:
        return load_safetensors_buffer(f.mapping(), str(conv.path), map_location=map_location,
                                       copy=(mmap is False), source=source)

