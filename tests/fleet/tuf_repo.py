"""A real TUF repository on disk, built with `tuf.api.metadata`, served from 127.0.0.1.

The layout is tuf-on-ci's: `metadata/N.root.json`, `metadata/timestamp.json`,
`metadata/N.snapshot.json`, `metadata/N.targets.json` (consistent snapshots), and
`targets/<dir>/<sha256>.<name>`. Tests change the repository the way its maintainers (or an
attacker on the mirror) would: publish a store, re-sign a timestamp, rotate the root, overwrite
a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from safeload.fleet import DEFAULT_TARGET

_ROLES = ("root", "timestamp", "snapshot", "targets")


def _in(days: float) -> dt.datetime:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).replace(microsecond=0)


class TufRepo:
    """Three root keys (threshold 2), one key per other role, consistent snapshots."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.metadata, self.targets_dir = base / "metadata", base / "targets"
        self.metadata.mkdir(parents=True)
        self.targets_dir.mkdir()
        self.signers: dict[str, list[Signer]] = {
            "root": [CryptoSigner.generate_ed25519() for _ in range(3)],
            **{r: [CryptoSigner.generate_ed25519()] for r in _ROLES[1:]},
        }
        self.root = Metadata(Root(expires=_in(365), consistent_snapshot=True))
        for role, signers in self.signers.items():
            for s in signers:
                self.root.signed.add_key(s.public_key, role)
        self.root.signed.roles["root"].threshold = 2
        self.targets = Metadata(Targets(expires=_in(90)))
        self.snapshot = Metadata(Snapshot(expires=_in(30)))
        self.timestamp = Metadata(Timestamp(expires=_in(1)))
        self.write_root()

    # -- signing and writing ------------------------------------------------------------

    def _sign(self, md: Metadata[Signed], signers: list[Signer]) -> bytes:
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        return md.to_bytes(JSONSerializer(compact=False))

    def write_root(self, signers: list[Signer] | None = None) -> bytes:
        data = self._sign(self.root, signers or self.signers["root"])  # type: ignore[arg-type]
        (self.metadata / f"{self.root.signed.version}.root.json").write_bytes(data)
        (self.metadata / "root.json").write_bytes(data)
        return data

    def root_bytes(self, version: int = 1) -> bytes:
        return (self.metadata / f"{version}.root.json").read_bytes()

    def write_targets(self) -> None:
        t = self.targets.signed
        data = self._sign(self.targets, self.signers["targets"])  # type: ignore[arg-type]
        (self.metadata / f"{t.version}.targets.json").write_bytes(data)
        self.snapshot.signed.meta["targets.json"] = MetaFile(t.version)
        s = self.snapshot.signed
        data = self._sign(self.snapshot, self.signers["snapshot"])  # type: ignore[arg-type]
        (self.metadata / f"{s.version}.snapshot.json").write_bytes(data)
        self.timestamp.signed.snapshot_meta = MetaFile(s.version)
        self.write_timestamp()

    def write_timestamp(self) -> bytes:
        data = self._sign(self.timestamp, self.signers["timestamp"])  # type: ignore[arg-type]
        (self.metadata / "timestamp.json").write_bytes(data)
        return data

    # -- what maintainers do ------------------------------------------------------------

    def target_file(self, path: str = DEFAULT_TARGET) -> Path:
        """The mirror's copy of the target (hash-prefixed name)."""
        return self._mirrored(path, self.targets.signed.targets[path])

    def _mirrored(self, path: str, info: TargetFile) -> Path:
        folder, _, name = path.rpartition("/")
        return self.targets_dir / folder / f"{info.hashes['sha256']}.{name}"

    def _mirror_and_release(self, path: str, info: TargetFile, data: bytes) -> None:
        """The target on the mirror, then new targets, snapshot and timestamp versions."""
        out = self._mirrored(path, info)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        self.targets.signed.version += 1
        self.snapshot.signed.version += 1
        self.timestamp.signed.version += 1
        self.write_targets()

    def publish(self, data: bytes, path: str = DEFAULT_TARGET) -> None:
        """A new store: new targets, snapshot and timestamp versions."""
        info = TargetFile.from_data(path, data, ["sha256"])
        self.targets.signed.targets[path] = info
        self._mirror_and_release(path, info, data)

    def bump_timestamp(self, *, expires: dt.datetime | None = None) -> bytes:
        """Re-sign the timestamp (what a repository does every few hours)."""
        self.timestamp.signed.version += 1
        self.timestamp.signed.expires = expires or _in(1)
        return self.write_timestamp()

    def rotate_root(self, new_root_keys: list[Signer], sign_with: list[Signer],
                    threshold: int = 2) -> bytes:
        """Root version + 1 with new root keys, signed by exactly `sign_with`."""
        r = self.root.signed
        for keyid in list(r.roles["root"].keyids):
            r.revoke_key(keyid, "root")
        for s in new_root_keys:
            r.add_key(s.public_key, "root")
        r.roles["root"].threshold = threshold
        r.version += 1
        return self.write_root(sign_with)

    def rotate_timestamp_key(self) -> None:
        """A new timestamp key (part of a root rotation)."""
        r = self.root.signed
        for keyid in list(r.roles["timestamp"].keyids):
            r.revoke_key(keyid, "timestamp")
        self.signers["timestamp"] = [CryptoSigner.generate_ed25519()]
        r.add_key(self.signers["timestamp"][0].public_key, "timestamp")

    def publish_delegated(self, data: bytes, role: str = "stores",
                          path: str = DEFAULT_TARGET) -> None:
        """The store signed by a delegated targets role (top-level targets delegates `path`
        to `role`, as repositories with per-team signing keys do)."""
        if role not in self.signers:
            signer = CryptoSigner.generate_ed25519()
            self.signers[role] = [signer]
            key = signer.public_key
            self.targets.signed.delegations = Delegations(
                keys={key.keyid: key},
                roles={role: DelegatedRole(role, [key.keyid], 1, True, paths=[path])})
            self.delegated = Metadata(Targets(expires=_in(90)))
        d = self.delegated.signed
        info = TargetFile.from_data(path, data, ["sha256"])
        d.targets[path] = info
        d.version += 1
        signed = self._sign(self.delegated, self.signers[role])  # type: ignore[arg-type]
        (self.metadata / f"{d.version}.{role}.json").write_bytes(signed)
        self.snapshot.signed.meta[f"{role}.json"] = MetaFile(d.version)
        self.targets.signed.targets.pop(path, None)
        self._mirror_and_release(path, info, data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    counts: dict[str, int]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.counts[self.path] = self.counts.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server:
    """The repository's folder over HTTP on 127.0.0.1, from a thread; `stop()` takes it down."""

    def __init__(self, base: Path) -> None:
        counts: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"counts": counts})

        def make(*args: object) -> http.server.SimpleHTTPRequestHandler:
            return handler(*args, directory=str(base))  # type: ignore[arg-type]

        self.counts = counts
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)  # type: ignore[arg-type]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def fetched(self, suffix: str) -> int:
        return sum(n for p, n in self.counts.items() if p.endswith(suffix))


@contextmanager
def serving(base: Path) -> Iterator[Server]:
    server = Server(base)
    try:
        yield server
    finally:
        if server.thread.is_alive():
            server.stop()


__all__ = ["Server", "TufRepo", "serving", "sha256"]
