"""Durable local spool: every batch / gap record hits disk (fsynced) before its cursor may advance.

Why: the sensor keeps only 10 minutes; once a sample has been read and the cursor moved past it,
the spool file is its only copy until S3 confirms the upload.

File layout ``{seqno:016d}-{kind}.spl`` (seqno monotonic => oldest first), content::

    b"EDSP1\\n" | u32 header_len | header JSON | payload (exact bytes uploaded) | u32 crc32(all before)

The header carries the object key and, per channel, the ``[first, next)`` sequence range the file
covers, so cursors can be re-derived from the spool at start without decompressing anything. Other
producers (the inference server's decision log, kind "decisions") use the same files with no ranges.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("factory_core.outbox.spool")

MAGIC = b"EDSP1\n"
_LEN = struct.Struct(">I")
SUFFIX = ".spl"
TMP_PREFIX = ".tmp-"
CORRUPT_DIR = "corrupt"
WRITE_ATTEMPTS = 3
KIND_TAGS = {"batch": "b", "gaps": "g", "decisions": "d"}  # file-name tag per header kind


class SpoolWriteError(OSError):
    """The spool could not make a file durable after fresh retries: the daemon must stop."""


class SpoolCorruptError(ValueError):
    """A spool file fails its magic/length/CRC check."""


@dataclass(frozen=True)
class SpoolHeader:
    """What a spool file holds: kind (a KIND_TAGS key), object key, line, channel seq ranges.

    ``ranges`` is empty for kinds without sensor channels (decisions); ``samples`` counts the
    payload's records (samples of a batch, decisions of a decision segment).
    """

    kind: str
    key: str
    line: str
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    samples: int = 0
    created_ns: int = 0

    def to_json(self) -> bytes:
        body = {
            "kind": self.kind,
            "key": self.key,
            "line": self.line,
            "ranges": {str(c): [a, b] for c, (a, b) in sorted(self.ranges.items())},
            "samples": self.samples,
            "created_ns": self.created_ns,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SpoolHeader:
        try:
            body: dict[str, Any] = json.loads(data)
            return cls(
                kind=str(body["kind"]),
                key=str(body["key"]),
                line=str(body["line"]),
                ranges={int(c): (int(a), int(b)) for c, (a, b) in body.get("ranges", {}).items()},
                samples=int(body.get("samples", 0)),
                created_ns=int(body.get("created_ns", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolCorruptError(f"bad spool header: {exc}") from None


@dataclass(order=True)
class SpoolEntry:
    """One durable file in the spool (ordered by seqno = write order)."""

    seqno: int
    path: Path = field(compare=False)
    size: int = field(compare=False)
    created: float = field(compare=False)


def encode_file(header: SpoolHeader, payload: bytes) -> bytes:
    head = header.to_json()
    body = MAGIC + _LEN.pack(len(head)) + head + payload
    return body + _LEN.pack(zlib.crc32(body))


def decode_file(data: bytes) -> tuple[SpoolHeader, bytes]:
    """Split and verify a whole spool file (raises SpoolCorruptError)."""
    if len(data) < len(MAGIC) + 8 or not data.startswith(MAGIC):
        raise SpoolCorruptError("bad magic or truncated spool file")
    (crc,) = _LEN.unpack_from(data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise SpoolCorruptError("spool file CRC mismatch")
    (hlen,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + 4
    if start + hlen > len(data) - 4:
        raise SpoolCorruptError("spool header length beyond file")
    header = SpoolHeader.from_json(data[start : start + hlen])
    return header, data[start + hlen : -4]


def read_header(path: Path) -> SpoolHeader:
    """Read only the header (cheap: used to derive cursors at start)."""
    with open(path, "rb") as fh:
        prefix = fh.read(len(MAGIC) + 4)
        if len(prefix) < len(MAGIC) + 4 or not prefix.startswith(MAGIC):
            raise SpoolCorruptError(f"{path.name}: bad magic")
        (hlen,) = _LEN.unpack_from(prefix, len(MAGIC))
        if hlen > 64 * 1024 * 1024:
            raise SpoolCorruptError(f"{path.name}: header length {hlen} implausible")
        head = fh.read(hlen)
        if len(head) != hlen:
            raise SpoolCorruptError(f"{path.name}: truncated header")
    return SpoolHeader.from_json(head)


def fsync_dir(path: Path, fsync: Callable[[int], None] = os.fsync) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool directory: durable writes, ordered listing, size accounting (thread-safe)."""

    def __init__(self, root: Path, fsync: Callable[[int], None] = os.fsync) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._entries: dict[int, SpoolEntry] = {}
        self._bytes = 0
        self._next_seqno = 0
        self.quarantined = 0  # files moved to CORRUPT_DIR by this instance (start-up scan included)
        self._scan()

    # -- start-up -----------------------------------------------------------------------------
    def _scan(self) -> None:
        """Drop leftover temp files (never renamed => never acknowledged) and index durable ones."""
        for path in self.root.iterdir():
            if path.name.startswith(TMP_PREFIX):
                path.unlink(missing_ok=True)
                continue
            if not path.name.endswith(SUFFIX):
                continue
            try:
                seqno = int(path.name.split("-", 1)[0])
            except ValueError:
                continue
            st = path.stat()
            self._entries[seqno] = SpoolEntry(seqno, path, st.st_size, st.st_mtime)
            self._bytes += st.st_size
        self._next_seqno = max(self._entries, default=-1) + 1

    def headers(self) -> Iterator[tuple[SpoolEntry, SpoolHeader]]:
        """Yield (entry, header) oldest first; corrupt files are quarantined, not deleted."""
        for entry in self.entries():
            try:
                yield entry, read_header(entry.path)
            except (SpoolCorruptError, OSError) as exc:
                self.quarantine(entry, str(exc))

    # -- writing ------------------------------------------------------------------------------
    def write(self, header: SpoolHeader, payload: bytes) -> SpoolEntry:
        """Make one file durable: temp file, write, fsync, rename, fsync dir.

        A failed write/fsync is never retried on the same file (the page cache state after a
        failed fsync is unknown); the data goes to a brand-new temp file instead, and after
        WRITE_ATTEMPTS failures SpoolWriteError tells the caller to stop.
        """
        tag = KIND_TAGS.get(header.kind)
        if tag is None:
            raise ValueError(f"spool header kind {header.kind!r} is not one of {sorted(KIND_TAGS)}")
        data = encode_file(header, payload)
        with self._lock:
            seqno = self._next_seqno
            self._next_seqno += 1
        final = self.root / f"{seqno:016d}-{tag}{SUFFIX}"
        last: OSError | None = None
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            tmp = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    self._fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                last = exc
                log.error(
                    "spool write failed; rewriting to a new temp file",
                    extra={"fields": {"event": "spool_write_failed", "attempt": attempt, "error": str(exc)}},
                )
                tmp.unlink(missing_ok=True)
                continue
            try:
                os.rename(tmp, final)
                fsync_dir(self.root, self._fsync)
            except OSError as exc:
                raise SpoolWriteError(f"spool rename/dir fsync failed for {final.name}: {exc}") from exc
            entry = SpoolEntry(seqno, final, len(data), time.time())
            with self._lock:
                self._entries[seqno] = entry
                self._bytes += len(data)
            return entry
        raise SpoolWriteError(f"spool write failed {WRITE_ATTEMPTS} times: {last}")

    # -- reading / removal --------------------------------------------------------------------
    def read(self, entry: SpoolEntry) -> tuple[SpoolHeader, bytes]:
        return decode_file(entry.path.read_bytes())

    def remove(self, entry: SpoolEntry) -> None:
        """Delete after S3 confirmed (a lost unlink only means an idempotent re-upload)."""
        entry.path.unlink(missing_ok=True)
        with self._lock:
            if self._entries.pop(entry.seqno, None) is not None:
                self._bytes -= entry.size

    def quarantine(self, entry: SpoolEntry, reason: str) -> None:
        """Move an unreadable file aside for a human (never silently delete un-uploaded data)."""
        dest = self.root / CORRUPT_DIR
        dest.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry.path, dest / entry.path.name)
        with self._lock:
            self.quarantined += 1
            if self._entries.pop(entry.seqno, None) is not None:
                self._bytes -= entry.size
        log.error(
            "spool file quarantined",
            extra={"fields": {"event": "spool_corrupt", "file": entry.path.name, "reason": reason}},
        )

    def entries(self) -> list[SpoolEntry]:
        with self._lock:
            return sorted(self._entries.values())

    def contains(self, entry: SpoolEntry) -> bool:
        with self._lock:
            return entry.seqno in self._entries

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    @property
    def file_count(self) -> int:
        with self._lock:
            return len(self._entries)

    def oldest_age_s(self, now: float | None = None) -> float:
        with self._lock:
            if not self._entries:
                return 0.0
            oldest = min(self._entries.values()).created
        return max(0.0, (time.time() if now is None else now) - oldest)
