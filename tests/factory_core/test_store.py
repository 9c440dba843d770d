"""One contract, two backends: LocalDirStore and S3Store (moto over HTTP) must behave identically."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from factory_core.store import (
    ChecksumMismatchError,
    InvalidKeyError,
    LocalDirStore,
    ObjectNotFoundError,
    ObjectStore,
    S3Store,
    StoreError,
    open_store,
)


@pytest.fixture(params=["local", "s3", "s3-prefixed", "s3-when-supported"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalDirStore(tmp_path / "store")
    endpoint = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    if request.param == "s3":
        return S3Store(bucket, endpoint_url=endpoint, page_size=3)  # small pages exercise pagination
    if request.param == "s3-prefixed":
        return S3Store(bucket, prefix="some/root", endpoint_url=endpoint)
    return S3Store(bucket, endpoint_url=endpoint, checksum="when_supported")


def test_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_get_roundtrip_and_overwrite(store: ObjectStore) -> None:
    store.put("raw/line=L1/a.fsr", b"\x00\x01binary\xff")
    assert store.get("raw/line=L1/a.fsr") == b"\x00\x01binary\xff"
    store.put("raw/line=L1/a.fsr", b"\x00\x01binary\xff")  # idempotent re-put
    assert store.get("raw/line=L1/a.fsr") == b"\x00\x01binary\xff"
    store.put("raw/line=L1/a.fsr", b"new")
    assert store.get("raw/line=L1/a.fsr") == b"new"


def test_empty_and_large_objects(store: ObjectStore) -> None:
    big = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB
    store.put("empty", b"")
    store.put("big/obj", big)
    assert store.get("empty") == b""
    assert store.get("big/obj") == big


def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="nope/x"):
        store.get("nope/x")
    assert not store.exists("nope/x")
    store.delete("nope/x")  # deleting a missing key is a no-op


def test_exists_and_delete(store: ObjectStore) -> None:
    store.put("d/k", b"1")
    assert store.exists("d/k")
    assert not store.exists("d")  # a prefix is not an object
    store.delete("d/k")
    assert not store.exists("d/k")
    assert list(store.list("d/")) == []


def test_list_sorted_prefix_and_start_after(store: ObjectStore) -> None:
    keys = ["a/b/2", "a/b/10", "a/b-c", "a/b/1", "a/c", "b/a", "a/b/sub/x", "ab"]
    for k in keys:
        store.put(k, k.encode())
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("a/b/")) == ["a/b/1", "a/b/10", "a/b/2", "a/b/sub/x"]
    assert list(store.list("a/b")) == ["a/b-c", "a/b/1", "a/b/10", "a/b/2", "a/b/sub/x"]
    assert list(store.list("a/", start_after="a/b/10")) == ["a/b/2", "a/b/sub/x", "a/c"]
    assert list(store.list("a/", start_after="a/b/2")) == ["a/b/sub/x", "a/c"]
    assert list(store.list("a/", start_after="zzz")) == []
    assert list(store.list("zzz/")) == []


def test_list_paginates_past_one_page(moto_server: str, s3_bucket: str, s3_client: Any) -> None:
    keys = [f"p/{i:05d}" for i in range(1005)]  # S3 pages hold at most 1000 keys
    with ThreadPoolExecutor(8) as pool:  # boto3 clients are thread-safe; this is only test setup
        list(pool.map(lambda k: s3_client.put_object(Bucket=s3_bucket, Key=k, Body=b""), keys))
    store = S3Store(s3_bucket, endpoint_url=moto_server)
    assert list(store.list("p/")) == keys
    assert list(store.list("p/", start_after="p/00998")) == keys[999:]


def test_invalid_keys_rejected(store: ObjectStore) -> None:
    for key in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b", "a\x00b", "a/.x.tmp-1"]:
        with pytest.raises(InvalidKeyError, match="key"):
            store.put(key, b"x")
        with pytest.raises(InvalidKeyError):
            store.get(key)
    assert list(store.list("")) == []


def test_local_put_is_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    store.put("x/y/z.fsr", b"data")
    assert sorted(p.name for p in (tmp_path / "x" / "y").iterdir()) == ["z.fsr"]


def test_local_list_ignores_leftover_temp_files(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    store.put("x/a", b"1")
    (tmp_path / "x" / ".b.tmp-abc").write_bytes(b"partial")  # as left by a crash mid-put
    assert list(store.list("")) == ["x/a"]


def test_local_get_of_prefix_is_not_found(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    store.put("x/a", b"1")
    with pytest.raises(ObjectNotFoundError):
        store.get("x")


class _LyingClient:
    """Wraps a real client but reports an ETag for other bytes, as a corrupting proxy would."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        resp = self.real.put_object(**kwargs)
        return {**resp, "ETag": '"' + hashlib.md5(b"other").hexdigest() + '"'}


def test_s3_put_detects_etag_mismatch(moto_server: str, s3_bucket: str, s3_client: Any) -> None:
    store = S3Store(s3_bucket, endpoint_url=moto_server, client=_LyingClient(s3_client))
    with pytest.raises(ChecksumMismatchError, match="ETag"):
        store.put("k", b"payload")


def test_s3_get_detects_corrupted_body(moto_server: str, s3_bucket: str, s3_client: Any) -> None:
    store = S3Store(s3_bucket, endpoint_url=moto_server)
    store.put("k", b"payload")

    class Corrupting:
        def get_object(self, **kwargs: Any) -> dict[str, Any]:
            resp = s3_client.get_object(**kwargs)
            resp["Body"].read()
            return {**resp, "Body": _Body(b"paylaod")}

    with pytest.raises(ChecksumMismatchError, match="ETag"):
        S3Store(s3_bucket, client=Corrupting()).get("k")


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


def test_s3_missing_bucket_is_a_store_error(moto_server: str) -> None:
    store = S3Store("no-such-bucket-here", endpoint_url=moto_server)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.put("k", b"x")


def test_s3_unreachable_endpoint_fails_fast_with_store_error() -> None:
    store = S3Store("bkt", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
    with pytest.raises(StoreError, match="s3://bkt/k"):
        store.put("k", b"x")


def test_s3_settings_validated() -> None:
    with pytest.raises(StoreError, match="checksum"):
        S3Store("bkt", checksum="always")
    with pytest.raises(StoreError, match="max_attempts"):
        S3Store("bkt", max_attempts=0)


def test_s3_client_config_maps_checksum_setting() -> None:
    cfg = S3Store(
        "bkt", endpoint_url="http://127.0.0.1:9", checksum="when_required", max_attempts=3
    ).client.meta.config
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_store(str(tmp_path / "a"))
    assert isinstance(local, LocalDirStore) and local.root == (tmp_path / "a").resolve()
    assert isinstance(open_store(f"file://{tmp_path}/b"), LocalDirStore)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1234")
    s3 = open_store("s3://bkt/some/prefix/")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("bkt", "some/prefix/", "http://127.0.0.1:1234")
    assert open_store("s3://bkt", endpoint_url="http://x:1").endpoint_url == "http://x:1"
    with pytest.raises(StoreError, match="scheme"):
        open_store("ftp://host/x")
    with pytest.raises(StoreError, match="bucket"):
        open_store("s3:///x")
    with pytest.raises(StoreError, match="empty"):
        open_store("")


def test_open_store_s3_roundtrip(moto_server: str, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/root", endpoint_url=moto_server)
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert list(store.list("")) == ["k"]


def test_local_concurrent_puts_leave_one_whole_object(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    payloads = [bytes([i]) * (1000 + i) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: store.put("raw/line=L1/date=2026-01-01/hour=00/k.fsr", p), payloads))
    assert store.get("raw/line=L1/date=2026-01-01/hour=00/k.fsr") in payloads
    assert list(store.list("")) == ["raw/line=L1/date=2026-01-01/hour=00/k.fsr"]
    assert [p.name for p in (tmp_path / "raw/line=L1/date=2026-01-01/hour=00").iterdir()] == ["k.fsr"]


def test_read_head_returns_the_first_bytes_and_the_size_with_or_without_get_head(tmp_path: Path) -> None:
    from factory_core.store import read_head

    store = LocalDirStore(tmp_path)
    store.put("a/b.bin", bytes(range(200)))
    assert store.get_head("a/b.bin", 16) == (bytes(range(16)), 200)
    assert read_head(store, "a/b.bin", 500) == (bytes(range(200)), 200)

    class GetOnly:
        def get(self, key: str) -> bytes:
            return store.get(key)

    assert read_head(GetOnly(), "a/b.bin", 3) == (b"\x00\x01\x02", 200)  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFoundError):
        store.get_head("a/missing.bin", 16)
