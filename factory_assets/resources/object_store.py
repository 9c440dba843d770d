"""Object-store resources: one interface, an S3 and a local-directory implementation.

Why: assets read raw objects and write Parquet through `ObjectStoreResource.get_store()` only, so the same
asset code runs against a laptop directory (embedded default var/objects) and any S3 endpoint (AWS, MinIO,
moto). Both wrap factory_core.store, the one implementation of the key layout's storage rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from factory_core.store import LocalDirStore, ObjectStore, S3Store


class ObjectStoreResource(ConfigurableResource):
    """Base class: subclasses build an `factory_core.store.ObjectStore`."""

    def get_store(self) -> ObjectStore:
        raise NotImplementedError(f"{type(self).__name__} must implement get_store()")

    # Thin delegates so asset code reads naturally (`object_store.get(key)`).
    def get(self, key: str) -> bytes:
        return self.get_store().get(key)

    def put(self, key: str, data: bytes) -> None:
        self.get_store().put(key, data)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        return self.get_store().list(prefix, start_after=start_after)

    def exists(self, key: str) -> bool:
        return self.get_store().exists(key)

    def describe(self) -> str:
        """Human-readable location, for metadata and error messages."""
        raise NotImplementedError(f"{type(self).__name__} must implement describe()")


class LocalObjectStoreResource(ObjectStoreResource):
    """Objects as files under a local directory (same key layout as S3)."""

    root: str = Field(default="var/objects", description="Directory holding raw/, gaps/, processed/ ...")

    def get_store(self) -> ObjectStore:
        return _local_store(self.root)

    def describe(self) -> str:
        return f"local:{self.root}"


class S3ObjectStoreResource(ObjectStoreResource):
    """Objects in an S3 bucket (any endpoint: AWS, MinIO, moto)."""

    bucket: str = Field(description="Bucket name")
    prefix: str = Field(default="", description="Key prefix inside the bucket")
    endpoint_url: str | None = Field(default=None, description="Custom S3 endpoint (MinIO, moto)")
    region: str = Field(default="us-east-1", description="AWS region")

    def get_store(self) -> ObjectStore:
        return _s3_store(self.bucket, self.prefix, self.endpoint_url, self.region)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


# Stores are cached per configuration: a boto3 client per call would dominate small reads.
@lru_cache(maxsize=16)
def _local_store(root: str) -> ObjectStore:
    return LocalDirStore(root)


@lru_cache(maxsize=16)
def _s3_store(bucket: str, prefix: str, endpoint_url: str | None, region: str) -> ObjectStore:
    return S3Store(bucket, prefix=prefix, endpoint_url=endpoint_url, region=region)
