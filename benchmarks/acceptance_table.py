"""The AI's acceptance table in docs/model.md, rendered from `factory-sim backtest --json` reports.

Why a script: the table is 30 rows of figures copied from six reports; by hand it drifts from what the
backtests printed. Run the backtests (docs/model.md names the seeds and lines), then:

    .venv/bin/python -m benchmarks.acceptance_table report1.json report2.json ...

prints the Markdown table and the summary figures the prose below it quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HEAD = (
    "| seed / line | quarter | line quality | best craftsman | oracle | faults line / best (count) "
    "| expected faults per 100,000 lots, line / best (the settings' true fault probability) "
    "| faults of the model's own settings / best craftsman on those lots | fallback "
    "| retrains in the quarter (promoted) | gate (truth: quality on this quarter's lots) "
    "| checks: model_beats_best_craftsman / model_performance (days judged) |"
)


def _verdict(ok: bool | None) -> str:
    return "not judged" if ok is None else "agrees" if ok else "DISAGREES"


def _per_100k(q: dict[str, Any], who: str) -> str:
    rate = q.get("expected_fault_rate", {}).get(who)
    return "n/a" if rate is None else f"{rate * 1e5:.2f}"


def _row(report: dict[str, Any], q: dict[str, Any]) -> str:
    faults, by = q["faults"], q.get("faults_by_setter", {})
    gate = q["gate"]
    check, perf = q["check"], q["model_performance"]
    beats = check["model_beats_best_craftsman"]
    retrains = q.get("refusal_retrains", [])
    own = q["model_set"]
    return (
        f"| {report['seed']} / {report['line']} | {q['quarter']} | {q['quality']['line']:.2f} "
        f"| {q['best_craftsman_name']} {q['quality']['best_craftsman']:.2f} | {q['quality']['oracle']:.2f} "
        f"| {q['fault_rate']['line']:.3%} / {q['fault_rate']['best_craftsman']:.3%} ({faults['line']} / "
        f"{faults['best_craftsman']}; {by.get('model', 0)} by the model, {by.get('craftsmen', 0)} by fallbacks) "
        f"| {_per_100k(q, 'line')} / {_per_100k(q, 'best_craftsman')} "
        f"| {own['faults']} / {own['best_craftsman_faults']} of {own['lots']} "
        f"| {q['fallback_rate']:.2%} | {len(retrains)} ({sum(e['promoted'] for e in retrains)}) "
        f"| {'promoted' if gate['promoted'] else 'kept'}: candidate {gate['candidate_next_quality']:.2f}, "
        f"serving {gate['serving_next_quality']:.2f} ({'right' if gate['right'] else 'WRONG'}) "
        f"| {'n/a' if beats is None else 'pass' if beats else 'fail'} ({_verdict(check['agrees'])}) / "
        f"{perf['verdict']} ({perf['days_judged']} days, {_verdict(perf['agrees'])}) |"
    )


def render(reports: list[dict[str, Any]]) -> str:
    rows = [HEAD, "|" + "---|" * 12]
    for r in reports:
        rows += [_row(r, q) for q in r["quarters"] if q["run_by"] == "model"]
        rows.append(
            f"| {r['seed']} / {r['line']} | **year** | gap to the oracle {r['oracle_gap_mean']:.2f} "
            f"| | | | | | | | | backtest {r['seconds']:.0f} s |"
        )
    return "\n".join(rows)


def _range(values: Any) -> list[float]:
    values = list(values)
    return [round(min(values), 2), round(max(values), 2)]


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the prose quotes: ranges over every model-run quarter of every report."""
    quarters = [(r, q) for r in reports for q in r["quarters"] if q["run_by"] == "model"]
    margins = [q["quality"]["line"] - q["quality"]["best_craftsman"] for _, q in quarters]
    retrains = [e for _, q in quarters for e in q.get("refusal_retrains", [])]
    gates = [q["gate"]["right"] for _, q in quarters]
    return {
        "quarters": len(quarters),
        "margin_over_best_craftsman": [round(min(margins), 2), round(max(margins), 2)],
        "oracle_gap_mean": [
            min(r["oracle_gap_mean"] for r in reports),
            max(r["oracle_gap_mean"] for r in reports),
        ],
        "fallback_rate_max": max(q["fallback_rate"] for _, q in quarters),
        "faults_line": sum(q["faults"]["line"] for _, q in quarters),
        "faults_best_craftsman": sum(q["faults"]["best_craftsman"] for _, q in quarters),
        "faults_by_model": sum(q.get("faults_by_setter", {}).get("model", 0) for _, q in quarters),
        "faults_by_fallbacks": sum(q.get("faults_by_setter", {}).get("craftsmen", 0) for _, q in quarters),
        "quarters_line_faulted_more_than_best": sum(
            q["faults"]["line"] > q["faults"]["best_craftsman"] for _, q in quarters
        ),
        "quarters_line_expected_fault_rate_above_best": sum(
            q["expected_fault_rate"]["line"] > q["expected_fault_rate"]["best_craftsman"] for _, q in quarters
        ),
        "expected_faults_line_per_100k": _range(q["expected_fault_rate"]["line"] * 1e5 for _, q in quarters),
        "expected_faults_best_per_100k": _range(
            q["expected_fault_rate"]["best_craftsman"] * 1e5 for _, q in quarters
        ),
        "quarters_model_expected_fault_rate_above_best_on_its_lots": sum(
            q["model_set"]["expected_fault_rate"] > q["model_set"]["best_craftsman_expected_fault_rate"]
            for _, q in quarters
        ),
        "faults_model_set": sum(q["model_set"]["faults"] for _, q in quarters),
        "faults_best_craftsman_on_model_set": sum(
            q["model_set"]["best_craftsman_faults"] for _, q in quarters
        ),
        "quarters_model_faulted_more_than_best_on_its_lots": sum(
            q["model_set"]["fault_rate"] > q["model_set"]["best_craftsman_fault_rate"] for _, q in quarters
        ),
        "gates_right": f"{sum(bool(g) for g in gates)} of {len(gates)}",
        "refusal_retrains": len(retrains),
        "refusal_retrains_promoted": sum(e["promoted"] for e in retrains),
        "refusal_retrains_right": f"{sum(e['right'] is True for e in retrains)} of "
        f"{sum(e['right'] is not None for e in retrains)} judged",
        "refusal_retrain_seconds": [
            min((e["train_seconds"] for e in retrains), default=0.0),
            max((e["train_seconds"] for e in retrains), default=0.0),
        ],
        "checks_agree": sum(q["check"]["agrees"] is True for _, q in quarters),
        "model_performance_agrees": sum(q["model_performance"]["agrees"] is True for _, q in quarters),
        "backtest_seconds": [min(r["seconds"] for r in reports), max(r["seconds"] for r in reports)],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.acceptance_table",
        description="Render `factory-sim backtest --json` reports as docs/model.md's acceptance table.",
    )
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of factory-sim backtest --json")
    args = parser.parse_args(argv)
    reports = [json.loads(p.read_text()) for p in args.reports]
    print(render(reports))
    print()
    print(json.dumps(summary(reports), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
