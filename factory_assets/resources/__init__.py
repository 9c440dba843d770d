"""Resources: object store (S3 or local directory) and warehouse (Postgres or SQLite)."""

from factory_assets.resources.object_store import (
    LocalObjectStoreResource,
    ObjectStoreResource,
    S3ObjectStoreResource,
)
from factory_assets.resources.selection import resources_from_env
from factory_assets.resources.warehouse import WarehouseResource

__all__ = [
    "LocalObjectStoreResource",
    "ObjectStoreResource",
    "S3ObjectStoreResource",
    "WarehouseResource",
    "resources_from_env",
]
