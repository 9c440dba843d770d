"""Model domain: the quarterly `quality_model` asset, its checks and its schedule (wired in definitions.py)."""

from factory_assets.model.assets import QUALITY_MODEL_KEY, quality_model
from factory_assets.model.checks import model_artefact_verifies, model_beats_best_craftsman
from factory_assets.model.schedule import quality_model_schedule

MODEL_ASSETS = [quality_model]
MODEL_CHECKS = [model_artefact_verifies, model_beats_best_craftsman]
MODEL_SCHEDULES = [quality_model_schedule]

__all__ = ["MODEL_ASSETS", "MODEL_CHECKS", "MODEL_SCHEDULES", "QUALITY_MODEL_KEY", "quality_model"]
