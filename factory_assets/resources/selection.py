"""Pick resource implementations from environment variables (the only environment-aware code).

FACTORY_STORE_URL       "s3://bucket/prefix", "file:///path" or a local directory (default var/objects),
                        parsed by factory_core.store.parse_store_url like every other store URL;
                        the S3 endpoint comes from FACTORY_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 or
                        AWS_ENDPOINT_URL (as for the collector and the server).
FACTORY_S3_REGION       default us-east-1
FACTORY_WAREHOUSE_URL   SQLAlchemy URL (default sqlite:///var/warehouse.db)
FACTORY_WAREHOUSE_SCHEMA  Postgres schema (optional)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from factory_assets.resources.object_store import (
    LocalObjectStoreResource,
    ObjectStoreResource,
    S3ObjectStoreResource,
)
from factory_assets.resources.warehouse import WarehouseResource
from factory_core.store import StoreError, parse_store_url, s3_endpoint_from_env

DEFAULT_STORE_URL = "var/objects"
DEFAULT_WAREHOUSE_URL = "sqlite:///var/warehouse.db"


class SettingError(ValueError):
    """An environment setting is malformed; the message names the variable."""


def store_from_url(
    url: str, endpoint_url: str | None = None, region: str = "us-east-1"
) -> ObjectStoreResource:
    """`s3://bucket/prefix` -> S3 resource, `file:///path` or a path -> local directory resource."""
    try:
        where = parse_store_url(url)
    except StoreError as exc:
        raise SettingError(f"FACTORY_STORE_URL: {exc}") from None
    if where.kind == "s3":
        return S3ObjectStoreResource(
            bucket=where.bucket, prefix=where.prefix, endpoint_url=endpoint_url or None, region=region
        )
    return LocalObjectStoreResource(root=where.path)


def resources_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resource dict for Definitions, validated up front (errors name the variable)."""
    env = os.environ if env is None else env
    endpoint = env.get("FACTORY_S3_ENDPOINT_URL") or s3_endpoint_from_env(env)
    store = store_from_url(
        env.get("FACTORY_STORE_URL", DEFAULT_STORE_URL) or DEFAULT_STORE_URL,
        endpoint_url=endpoint,
        region=env.get("FACTORY_S3_REGION", "us-east-1"),
    )
    wh_url = env.get("FACTORY_WAREHOUSE_URL", DEFAULT_WAREHOUSE_URL) or DEFAULT_WAREHOUSE_URL
    if not (wh_url.startswith("sqlite") or wh_url.startswith("postgresql")):
        raise SettingError(f"FACTORY_WAREHOUSE_URL {wh_url!r}: must be a sqlite:// or postgresql:// URL")
    warehouse = WarehouseResource(url=wh_url, db_schema=env.get("FACTORY_WAREHOUSE_SCHEMA") or None)
    return {"object_store": store, "warehouse": warehouse}
