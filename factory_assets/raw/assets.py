"""External raw assets: the edge collector writes them, Dagster only records what landed.

Why external (AssetSpec) rather than @asset: no Dagster run produces raw objects; the raw-objects sensor
records, per tick, one materialization per (line, date) partition that objects landed in (naming a
manifest of every object), which is what downstream automation reacts to.
"""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey, AssetSpec, FreshnessPolicy

from factory_assets.raw.partitions import LINE_DAY_PARTITIONS

RAW_ASSET_KEY = AssetKey(["raw", "raw_sensor_data"])
# The collector uploads every poll (seconds to a minute): warn after the raw alert sensor's default of
# 15 minutes without a new object, fail after an hour (Dagster's current freshness API, shown in the UI).
RAW_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=1), warn_window=dt.timedelta(minutes=15)
)
GAPS_ASSET_KEY = AssetKey(["raw", "raw_sensor_gaps"])

raw_sensor_data = AssetSpec(
    key=RAW_ASSET_KEY,
    description=(
        "Raw sensor objects (.fsr, zstd) written by the edge collector under "
        "raw/line={line}/date={YYYY-MM-DD}/hour={HH}/. The `raw_objects_sensor` records one materialization "
        "per partition and tick with the objects that landed (count, samples, merged sequence ranges) and "
        "`manifest`: a JSON object in the store listing every object's key, channels, sequence ranges and "
        "sample counts (`manifests_of_partition`: every manifest of the partition)."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    freshness_policy=RAW_FRESHNESS,
    group_name="raw",
    kinds={"s3", "zstd"},
    owners=["team:data-platform"],
    metadata={
        "key_layout": "raw/line={line}/date={YYYY-MM-DD}/hour={HH}/{line}_{group}_{start}_{digest}.fsr",
        "manifest_layout": "manifests/raw/line={line}/date={YYYY-MM-DD}/{digest}.json",
    },
)

raw_sensor_gaps = AssetSpec(
    key=GAPS_ASSET_KEY,
    description=(
        "Gap ledger (.fsg) written by the edge collector under gaps/line={line}/date={YYYY-MM-DD}/: samples "
        "the sensor system lost before they could be collected. A recorded gap counts as coverage when "
        "deciding whether a day is complete."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    group_name="raw",
    kinds={"s3"},
    owners=["team:data-platform"],
    metadata={"key_layout": "gaps/line={line}/date={YYYY-MM-DD}/{line}_{start}_{digest}.fsg"},
)
