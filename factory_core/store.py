"""Object store abstraction: one small contract, a local-directory backend and an S3 backend.

The collector, the history generator and the cloud side only ever talk to `ObjectStore`, so tests and
the demo can run against a directory while production runs against S3 (or an S3-compatible store).
Contract: `put` is atomic, idempotent and checksum-verified; `list` yields keys in byte order, filtered
by prefix and strictly after `start_after`; `get` of a missing key raises `ObjectNotFoundError`;
`get_head(key, n)` (optional; `read_head` falls back to `get`) returns the first n bytes and the
object's full size, so a reader of headers does not transfer whole objects;
`delete` of a missing key is a no-op. Every failure is a `StoreError` subclass whose message names the
operation, the store and the key, so callers can retry on `StoreError` without parsing botocore types.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

__all__ = [
    "CHECKSUM_MODES",
    "ChecksumMismatchError",
    "InvalidKeyError",
    "LocalDirStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "S3Store",
    "StoreError",
    "open_store",
    "read_head",
]

CHECKSUM_MODES = ("when_required", "when_supported")
_TMP_MARK = ".tmp-"


class StoreError(Exception):
    """A store operation failed (network, permissions, integrity); the message names op and key."""


class ObjectNotFoundError(StoreError, KeyError):
    """The key does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ChecksumMismatchError(StoreError):
    """The store acknowledged or returned bytes whose checksum differs from what was sent/stored."""


class InvalidKeyError(StoreError, ValueError):
    """A key is not a relative '/'-separated path without empty, '.' or '..' segments."""


@runtime_checkable
class ObjectStore(Protocol):
    """What every backend provides; keys are '/'-separated relative paths."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def read_head(store: ObjectStore, key: str, n: int) -> tuple[bytes, int]:
    """The first `n` bytes of an object and its full size: one ranged read where the backend has
    `get_head` (local files, S3 Range GET), else a full `get` cut to `n` bytes."""
    get_head = getattr(store, "get_head", None)
    if get_head is not None:
        return get_head(key, n)
    data = store.get(key)
    return data[:n], len(data)


_BAD_CHARS = re.compile(r"[\x00-\x1f\\]")


def check_key(key: str) -> str:
    """Reject keys that would escape the root or map ambiguously onto a filesystem."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"key {key!r} must be a non-empty string")
    if key.startswith("/") or key.endswith("/") or _BAD_CHARS.search(key):
        raise InvalidKeyError(
            f"key {key!r} must be relative, not end in '/', and have no control chars or '\\'"
        )
    for part in key.split("/"):
        if part in ("", ".", "..") or (part.startswith(".") and _TMP_MARK in part):
            raise InvalidKeyError(f"key {key!r} has an empty, '.', '..' or temp-file segment {part!r}")
    return key


# ------------------------------------------------------------------------------------------ local dir


class LocalDirStore:
    """Objects as files under root. put = temp file + fsync + rename + dir fsync (atomic and durable)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"local store: cannot create root directory {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalDirStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        """Write a temp file, fsync, read it back and compare, rename over the key, fsync the dir."""
        path = self._path(key)
        try:
            _makedirs_durable(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", dir=path.parent)
            try:
                with os.fdopen(fd, "w+b") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                    fh.seek(0)
                    if fh.read() != data:
                        raise ChecksumMismatchError(
                            f"local store: put {key!r}: read-back differs from the data"
                        )
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"local store: put {key!r} under {self.root} failed: {exc}") from exc

    @contextlib.contextmanager
    def _reading(self, op: str, key: str) -> Iterator[None]:
        """The store's errors for a read of `key`: missing (or a prefix) vs any other OS failure."""
        try:
            yield
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"local store: no object {key!r} under {self.root}") from exc
        except IsADirectoryError as exc:
            raise ObjectNotFoundError(f"local store: {key!r} is a prefix, not an object") from exc
        except OSError as exc:
            raise StoreError(f"local store: {op} {key!r} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        with self._reading("get", key):
            return self._path(key).read_bytes()

    def get_head(self, key: str, n: int) -> tuple[bytes, int]:
        """First n bytes and the file's size (one open, one read)."""
        with self._reading("get_head", key), self._path(key).open("rb") as fh:
            return fh.read(n), os.fstat(fh.fileno()).st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"local store: delete {key!r} failed: {exc}") from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Keys starting with prefix, in byte order, strictly after start_after (same as S3)."""
        if "\\" in prefix or prefix.startswith("/"):
            raise InvalidKeyError(f"prefix {prefix!r} must be relative and use '/'")
        # Only walk the deepest directory the prefix pins down; filter the rest by string compare.
        base_parts = [p for p in prefix.split("/")[:-1] if p]
        if any(p in (".", "..") for p in base_parts):
            raise InvalidKeyError(f"prefix {prefix!r} has a '.' or '..' segment")
        base = self.root.joinpath(*base_parts)
        if not base.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(".") and _TMP_MARK in name:
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        keys.sort(key=lambda k: k.encode())
        yield from keys


def _makedirs_durable(directory: Path) -> None:
    """mkdir -p, fsyncing each new directory's parent so the new entries survive a power cut too."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent put created it first
            d.mkdir()
        _fsync_dir(d.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ S3


class S3Store:
    """S3 (or S3-compatible) bucket, optionally under a key prefix.

    `checksum` maps to botocore's request_checksum_calculation/response_checksum_validation: boto3>=1.36
    defaults to "when_supported" (CRC32 trailers on every PUT), which several S3-compatible stores reject;
    "when_required" (our default) sends what we ask for only. `max_attempts` is small because the
    caller's own loop retries with its own backoff and must learn about an outage quickly.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        checksum: str = "when_required",
        max_attempts: int = 2,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        verify_etag: bool = True,
        page_size: int = 1000,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise StoreError("S3 store: bucket name is empty")
        if checksum not in CHECKSUM_MODES:
            raise StoreError(f"S3 store: checksum {checksum!r} must be one of {CHECKSUM_MODES}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise StoreError(f"S3 store: max_attempts {max_attempts!r} must be an int >= 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.checksum = checksum
        self.verify_etag = verify_etag
        self.page_size = page_size
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=region,
                retries={"total_max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                request_checksum_calculation=checksum,
                response_checksum_validation=checksum,
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store(s3://{self.bucket}/{self.prefix}{where})"

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _fail(self, op: str, key: str, exc: Exception) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            msg = f"S3 {op} {self._where(key)} failed: {code} {err.get('Message', '')}".rstrip()
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFoundError(msg)
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                return ChecksumMismatchError(msg)
            return StoreError(msg)
        return StoreError(f"S3 {op} {self._where(key)} failed: {type(exc).__name__}: {exc}")

    def put(self, key: str, data: bytes) -> None:
        """PUT with Content-MD5 (and x-amz-checksum-sha256 in when_supported mode); verify the reply."""
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        md5 = hashlib.md5(data, usedforsecurity=False)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "Body": data,
            "ContentMD5": base64.b64encode(md5.digest()).decode(),
        }
        sha256_b64 = None
        if self.checksum == "when_supported":
            sha256_b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
            args["ChecksumSHA256"] = sha256_b64
        try:
            resp = self.client.put_object(**args)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("put", key, exc) from exc
        etag = str(resp.get("ETag", "")).strip('"')
        if self.verify_etag and re.fullmatch(r"[0-9a-fA-F]{32}", etag) and etag.lower() != md5.hexdigest():
            raise ChecksumMismatchError(
                f"S3 put {self._where(key)}: ETag {etag} is not the MD5 of the sent bytes"
            )
        returned = resp.get("ChecksumSHA256")
        if sha256_b64 is not None and returned is not None and returned != sha256_b64:
            raise ChecksumMismatchError(
                f"S3 put {self._where(key)}: ChecksumSHA256 {returned} != sent {sha256_b64}"
            )

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            data = resp["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("get", key, exc) from exc
        length = resp.get("ContentLength")
        if length is not None and length != len(data):
            raise StoreError(f"S3 get {self._where(key)}: read {len(data)} bytes, ContentLength {length}")
        etag = str(resp.get("ETag", "")).strip('"')
        if (
            self.verify_etag
            and re.fullmatch(r"[0-9a-fA-F]{32}", etag)
            and etag.lower() != hashlib.md5(data, usedforsecurity=False).hexdigest()
        ):
            raise ChecksumMismatchError(f"S3 get {self._where(key)}: body does not match its ETag {etag}")
        return data

    def get_head(self, key: str, n: int) -> tuple[bytes, int]:
        """Ranged GET of the first n bytes; the full size from Content-Range (ETag covers the whole
        object, so it is not checked here: the reader validates what it reads itself)."""
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, Range=f"bytes=0-{n - 1}")
            data = resp["Body"].read()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "InvalidRange":  # an empty object
                return b"", 0
            raise self._fail("get_head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("get_head", key, exc) from exc
        content_range = str(resp.get("ContentRange") or "")
        total = content_range.rsplit("/", 1)[-1] if "/" in content_range else ""
        size = int(total) if total.isdigit() else len(data)
        return data[:n], size

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as exc:
            err = self._fail("head", key, exc)
            if isinstance(err, ObjectNotFoundError):
                return False
            raise err from exc
        return True

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("delete", key, exc) from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """list_objects_v2 pages with Prefix/StartAfter; keys returned relative to the store prefix."""
        from botocore.exceptions import BotoCoreError, ClientError

        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after is not None:
            args["StartAfter"] = self.prefix + start_after
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                **args, PaginationConfig={"PageSize": self.page_size}
            ):
                for obj in page.get("Contents", ()):
                    yield obj["Key"][len(self.prefix) :]
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", prefix, exc) from exc


# ------------------------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class StoreLocation:
    """Where a store URL points: an S3 bucket and prefix, or a local directory."""

    kind: str  # "s3" | "local"
    bucket: str = ""
    prefix: str = ""
    path: str = ""


def parse_store_url(url: str) -> StoreLocation:
    """The one parser of store URLs: 's3://bucket[/prefix]', 'file:///path' or a plain directory path.

    Raises StoreError naming the URL and the rule; callers add the name of their setting."""
    if not url:
        raise StoreError("store URL is empty (expected s3://bucket/prefix or a directory path)")
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"store URL {url!r} has no bucket (expected s3://bucket/prefix)")
        return StoreLocation("s3", bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    if parsed.scheme == "file":
        return StoreLocation("local", path=parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # 1-char scheme = Windows drive letter
        raise StoreError(
            f"store URL {url!r}: scheme {parsed.scheme!r} is not supported (use s3://, file:// or a path)"
        )
    return StoreLocation("local", path=url)


def s3_endpoint_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint override from the environment: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL."""
    env = os.environ if env is None else env
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def open_store(url: str, *, endpoint_url: str | None = None, **s3_options: Any) -> ObjectStore:
    """'s3://bucket[/prefix]' -> S3Store (endpoint: argument, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL);
    'file:///path' or a plain path -> LocalDirStore."""
    where = parse_store_url(url)
    if where.kind == "s3":
        endpoint = endpoint_url or s3_endpoint_from_env()
        return S3Store(where.bucket, where.prefix, endpoint_url=endpoint, **s3_options)
    return LocalDirStore(where.path)
