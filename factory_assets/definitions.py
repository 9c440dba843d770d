"""The code location: assets, checks, sensors, schedules and resources of the factory data platform.

Resources are chosen from the environment here (and only here): see resources/selection.py. ASSETS is the
data graph (raw -> productions -> aggregates). The model domain (factory_assets/model/, its own issue)
plugs in downstream of both: `assets=[*ASSETS, *MODEL_ASSETS], asset_checks=MODEL_CHECKS,
schedules=MODEL_SCHEDULES` (left to the lead: see the hand-over report).
"""

import warnings

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
    Definitions,
    PreviewWarning,
)

from factory_assets.aggregates.assets import AGGREGATES_KEY, daily_line_aggregates
from factory_assets.production.assets import PRODUCTIONS_KEY, productions
from factory_assets.raw.assets import raw_sensor_data, raw_sensor_gaps
from factory_assets.raw.sensors import build_raw_objects_sensor
from factory_assets.resources.selection import resources_from_env

# Beta/preview APIs used knowingly (MultiPartitionMapping, BackfillPolicy, custom automation conditions).
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

ASSETS = [raw_sensor_data, raw_sensor_gaps, productions, daily_line_aggregates]

# Built-in conditions run in the daemon; the aggregates' custom condition needs the user-code server.
productions_automation = AutomationConditionSensorDefinition(
    "productions_automation",
    target=AssetSelection.assets(PRODUCTIONS_KEY),
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes production tables whose raw objects landed (intraday and late objects).",
)
aggregates_automation = AutomationConditionSensorDefinition(
    "aggregates_automation",
    target=AssetSelection.assets(AGGREGATES_KEY),
    minimum_interval_seconds=60,
    use_user_code_server=True,
    default_status=DefaultSensorStatus.RUNNING,
    description="Materializes daily aggregates once a day is complete (never on a half day).",
)


def build_definitions() -> Definitions:
    """Definitions with resources selected from the environment."""
    return Definitions(
        assets=ASSETS,
        sensors=[build_raw_objects_sensor(), productions_automation, aggregates_automation],
        resources=resources_from_env(),
    )


defs = build_definitions()
