"""Decision-log domain: the inference server's decisions as an external asset, recorded by a listing sensor."""

from factory_assets.decisions.assets import DECISION_LOG_KEY, decision_log
from factory_assets.decisions.sensors import build_decision_log_sensor

__all__ = ["DECISION_LOG_KEY", "build_decision_log_sensor", "decision_log"]
