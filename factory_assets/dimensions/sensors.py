"""`crew_roster_sensor`: reloads the warehouse's `crew` table when the factory edits its roster.

Why a sensor on the roster's digest: the roster (layout.CREW_KEY) changes by hand a few times a year, at no
predictable time; a digest of its bytes in the cursor notices any change (and the first roster) on the next
tick, and the run key (the digest) makes one run per version of the roster, however many ticks see it.
"""

import hashlib

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from factory_assets.dimensions.assets import CREW_ASSET_KEY
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.layout import CREW_KEY
from factory_core.store import ObjectNotFoundError


@sensor(
    name="crew_roster_sensor",
    asset_selection=[CREW_ASSET_KEY],
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Materializes master/crew when the crew roster ({CREW_KEY}) appears or changes (by its digest).",
)
def crew_roster_sensor(
    context: SensorEvaluationContext, object_store: ObjectStoreResource
) -> SensorResult | SkipReason:
    try:
        data = object_store.get(CREW_KEY)
    except ObjectNotFoundError:
        return SkipReason(f"no crew roster at {CREW_KEY} yet")
    digest = hashlib.sha256(data).hexdigest()
    if digest == context.cursor:
        return SkipReason(f"{CREW_KEY} unchanged (sha256 {digest[:12]})")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"crew-{digest[:16]}", tags={"roster_sha256": digest})],
        cursor=digest,
    )
