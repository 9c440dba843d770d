"""Alerting for the Dagster side: run failures, failed asset checks and silent lines page via SNS/e-mail.

The lead wires this into definitions.py::

    from factory_assets.alerting import alerting_resources, alerting_sensors
    Definitions(..., sensors=[*alerting_sensors], resources={**resources_from_env(), **alerting_resources()})

Sensors need the ``alert_notifier`` resource (and the freshness sensor the ``object_store`` resource that
factory_assets.resources already provides).
"""

from factory_assets.alerting.freshness import LineFreshness, line_freshness, raw_freshness_alert_sensor
from factory_assets.alerting.resource import AlertNotifierResource, alerting_resources
from factory_assets.alerting.sensors import asset_check_failure_alert_sensor, run_failure_alert_sensor

alerting_sensors = [run_failure_alert_sensor, asset_check_failure_alert_sensor, raw_freshness_alert_sensor]

__all__ = [
    "AlertNotifierResource",
    "LineFreshness",
    "alerting_resources",
    "alerting_sensors",
    "asset_check_failure_alert_sensor",
    "line_freshness",
    "raw_freshness_alert_sensor",
    "run_failure_alert_sensor",
]
