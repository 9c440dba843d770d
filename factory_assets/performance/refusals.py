"""When the serving model does not know its lots: its own refusals and far answers, counted, and when to retrain.

Why: a model knows the lots its history holds. When the season moves the lots beyond them, the server
first answers them from the prior's extrapolation (`support.lot_distance` beyond `far_answer_distance`,
4 x history's own q99 nearest-lot distance), then refuses them of its own accord (`out_of_support`,
`low_predicted_quality`, `no_feasible_setting`: quality_model.search.recommender) and hands them to the
crew on shift, who fault on exactly such lots (docs/model.md: nearly all faults of the line as run were
these fallbacks'). The lots are run either way, and the history then holds lots like them: a model
retrained on it answers them from evidence. So the platform does not wait for the quarter's end: when
the serving version refused or answered far out more than `max_refusals` lots over the trailing
`window_days`, it retrains on all history so far, and the promotion gate decides as at every retrain.
Operational refusals (`deadline_exceeded`, `model_unavailable`) are not the model's and do not count.

One rule for both users: `model_performance`'s check `model_performance_own_refusals` and the retrain
sensor (factory_assets/performance/retrain.py) in the platform, and `factory-sim backtest`, which measures
what the rule is worth (docs/model.md, "Retraining when the model refuses").

Pure (no Dagster, no store): decisions arrive as the typed frame of `compute.decisions_frame`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

OUT_OF_SUPPORT = "out_of_support"
MODEL_REASONS = (OUT_OF_SUPPORT, "low_predicted_quality", "no_feasible_setting")
FAR_ANSWER = "far_answer"
"""`by_reason`'s name for answers beyond `RefusalRule.far_answer_distance`."""


@dataclass(frozen=True)
class RefusalRule:
    """How many of its own refusals and far answers a trailing window tolerates of the serving version,
    and how often a retrain may be requested for one version (measured with the backtest: docs/model.md)."""

    window_days: int = 7
    max_refusals: int = 0
    reasons: tuple[str, ...] = MODEL_REASONS
    # an answer whose lot lies beyond this many x history's q99 nearest-lot distance counts like a refusal
    # (the server answers up to quality_model.training.LOT_DISTANCE_REFUSE_RATIO; inf: answers never count)
    far_answer_distance: float = 4.0
    # at most one request per version per `window_days`: the retrained history needs days to fill in
    # the refused region, and a candidate the gate rejected should not be retried the next day

    def window_first(self, day: dt.date) -> dt.date:
        return day - dt.timedelta(days=self.window_days - 1)


@dataclass(frozen=True)
class RefusalVerdict:
    """The check's figures for one (line, day): the serving version, its own refusals and its far answers
    in the window (`by_reason` counts both, far answers as `far_answer`)."""

    day: dt.date
    version_number: int | None
    refusals: int
    answered: int
    rule: RefusalRule
    by_reason: dict[str, int] = field(default_factory=dict)
    far_answers: int = 0

    @property
    def passed(self) -> bool:
        return self.refusals + self.far_answers <= self.rule.max_refusals

    @property
    def description(self) -> str:
        version = "no model" if self.version_number is None else f"model:v{self.version_number}"
        first = self.rule.window_first(self.day)
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(self.by_reason.items())) or "none"
        verb = "within" if self.passed else "beyond"
        far = f"{self.far_answers} of them beyond {self.rule.far_answer_distance:g}x history's lot distance"
        return (
            f"{version} refused {self.refusals} lots of its own accord in {first}..{self.day} ({reasons}; "
            f"{self.answered} answered, {far}): {verb} the tolerated {self.rule.max_refusals}"
        )


def _lots(refused: pl.DataFrame) -> int:
    """Lots among refusals: a lot asked about twice (the control system retried) is one; no id, one each."""
    ids = refused["lot_id"]
    return ids.drop_nulls().n_unique() + int(ids.is_null().sum())


def judge(decisions: pl.DataFrame, line: str, day: dt.date, rule: RefusalRule) -> RefusalVerdict:
    """The serving version's own refusals and far answers on `line` over the window ending with `day`.

    The serving version is the newest decision's (answers and refusals both carry it); refusals of an
    earlier version do not count against its successor, which learned from the history since."""
    lo = dt.datetime.combine(rule.window_first(day), dt.time(), tzinfo=dt.UTC)
    hi = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    window = decisions.filter((pl.col("line") == line) & (pl.col("ts") >= lo) & (pl.col("ts") < hi)).filter(
        pl.col("model_version_number").is_not_null()
    )
    if window.height == 0:
        return RefusalVerdict(day, None, 0, 0, rule)
    version = int(window.sort("ts")["model_version_number"][-1])
    own = window.filter(pl.col("model_version_number") == version)
    refused = own.filter((pl.col("status") != 200) & pl.col("outcome").is_in(list(rule.reasons)))
    by_reason = {str(k): _lots(part) for (k,), part in refused.group_by(["outcome"])}
    answers = own.filter(pl.col("status") == 200)
    far = answers.filter(pl.col("lot_distance") > rule.far_answer_distance)
    if far.height:
        by_reason[FAR_ANSWER] = _lots(far)
    return RefusalVerdict(day, version, _lots(refused), answers.height, rule, by_reason, _lots(far))


def should_request(day: dt.date, requested_before: Iterable[dt.date], rule: RefusalRule) -> bool:
    """A failing day requests a retrain unless one was requested for the same version in the window."""
    first = rule.window_first(day)
    return not any(first <= d <= day for d in requested_before)
