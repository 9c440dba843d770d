"""Control loop against a real HTTP endpoint on loopback: model decisions, and every way of falling back."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from factory_core.machine import MODEL_CODE_BASE
from factory_sim import control, physics
from factory_sim.config import SimConfig
from factory_sim.control import EndpointFailure, HttpPolicy, parse_response, productions_from
from factory_sim.craftsmen import on_shift
from factory_sim.schedule import LineTimeline, Production
from tests.support.endpoint import Strategy, TestingEndpoint

KEY = "test-key-123"
SEED = 11
LINE = "L1"
START = control.parse_start("2026-01-05T06:30:00Z")  # inside a morning shift, after the handover
N = 4


@pytest.fixture
def endpoint() -> Iterator[TestingEndpoint]:
    with TestingEndpoint(
        KEY, Strategy(kind="oracle", noise=0.0, model_version="m-7", model_version_number=7)
    ) as ep:
        yield ep


def run_line(
    url: str, *, key: str = KEY, deadline_s: float = 2.0, n: int = N
) -> tuple[list[Production], HttpPolicy]:
    policy = HttpPolicy(url, key, deadline_s, LINE)
    try:
        timeline = LineTimeline(SimConfig(seed=SEED, lines=(LINE,)), LINE, policy, policy_since_ns=START)
        prods = list(productions_from(timeline, START, n))
    finally:
        policy.close()
    return prods, policy


def craftsman_only(n: int = N) -> list[Production]:
    timeline = LineTimeline(SimConfig(seed=SEED, lines=(LINE,)), LINE)
    return list(productions_from(timeline, START, n))


def assert_fell_back(prods: list[Production], policy: HttpPolicy, reason: str) -> None:
    """Every production was decided by the craftsman on shift, exactly as without any endpoint."""
    baseline = craftsman_only(len(prods))
    assert [p.production_id for p in prods] == [p.production_id for p in baseline]
    for prod, base in zip(prods, baseline, strict=True):
        assert prod.set_by == on_shift(SEED, LINE, prod.shift_index).name
        assert prod.set_by_code < MODEL_CODE_BASE
        assert (prod.params, prod.set_by, prod.outcome) == (base.params, base.set_by, base.outcome)
        assert policy.ledger.by_lot[prod.lot.lot_id] == reason
    assert dict(policy.ledger.counts) == {reason: len(prods)}
    assert policy.ledger.answered == 0


def test_answering_endpoint_sets_the_dial(endpoint: TestingEndpoint) -> None:
    prods, policy = run_line(endpoint.url)
    assert len(prods) == N
    assert all(p.start_ns >= START for p in prods)
    for prod in prods:
        assert prod.set_by == "model:m-7"
        assert prod.set_by_code == MODEL_CODE_BASE + 7
        assert prod.params == pytest.approx(physics.optimum(prod.lot))  # noise 0: the endpoint sent p*
        assert policy.ledger.by_lot[prod.lot.lot_id] is None
    assert policy.ledger.summary() == {"asked": N, "answered": N, "fallbacks": 0, "fallback_reasons": {}}
    assert endpoint.by_status == {200: N}  # asked once per production, never about the history before START


def test_slow_endpoint_beyond_deadline_falls_back_with_reason_deadline(endpoint: TestingEndpoint) -> None:
    endpoint.set(kind="slow", delay_s=30.0)
    prods, policy = run_line(endpoint.url, deadline_s=0.2, n=2)
    assert_fell_back(prods, policy, "deadline")


def test_deadline_is_total_not_per_read(endpoint: TestingEndpoint) -> None:
    """A body trickled one byte per 50 ms never trips a per-read timeout; the hard deadline still fires."""
    endpoint.set(kind="trickle", delay_s=0.05)
    prods, policy = run_line(endpoint.url, deadline_s=0.3, n=1)
    assert_fell_back(prods, policy, "deadline")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("unavailable", "model_unavailable"),
        ("deadline_exceeded", "server_deadline_exceeded"),
        ("server_error", "server_error"),
        ("garbage", "malformed_response"),
        ("bad_params", "unsafe_parameters"),
    ],
)
def test_failing_endpoint_falls_back_with_reason(endpoint: TestingEndpoint, kind: str, reason: str) -> None:
    endpoint.set(kind=kind)
    prods, policy = run_line(endpoint.url, n=2)
    assert_fell_back(prods, policy, reason)


def test_wrong_key_is_401_and_falls_back(endpoint: TestingEndpoint) -> None:
    prods, policy = run_line(endpoint.url, key="not-the-key", n=2)
    assert_fell_back(prods, policy, "unauthorized")
    assert endpoint.by_status == {401: 2}


def test_endpoint_down_falls_back_with_reason_connection() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prods, policy = run_line(f"http://127.0.0.1:{port}", n=2)
    assert_fell_back(prods, policy, "connection")


def test_outage_mid_run_counts_each_production_once(endpoint: TestingEndpoint) -> None:
    """Endpoint fails between productions: the ledger adds up and each decision names its source."""
    policy = HttpPolicy(endpoint.url, KEY, 2.0, LINE)
    try:
        timeline = LineTimeline(SimConfig(seed=SEED, lines=(LINE,)), LINE, policy, policy_since_ns=START)
        prods = []
        for i, prod in enumerate(productions_from(timeline, START, 6)):
            prods.append(prod)
            endpoint.set(kind="unavailable" if i in (1, 2) else "oracle")  # decides the NEXT production
    finally:
        policy.close()
    assert [p.set_by.startswith("model:") for p in prods] == [True, True, False, False, True, True]
    assert policy.ledger.summary() == {
        "asked": 6,
        "answered": 4,
        "fallbacks": 2,
        "fallback_reasons": {"model_unavailable": 2},
    }


def test_parse_response_rejects_what_the_contract_forbids() -> None:
    good = {
        "request_id": "r",
        "line_id": LINE,
        "model_version": "v",
        "model_version_number": 3,
        "parameters": {"temperature": 200.0, "feed_rate": 30.0, "pressure": 100},
        "predicted_quality": 90.0,
        "predicted_fault_risk": 0.01,
        "latency_ms": 1.0,
    }
    rec = parse_response(200, json.dumps(good).encode(), LINE)
    assert rec.params == physics.Params(200.0, 30.0, 100.0)
    cases: list[tuple[int, bytes, str]] = [
        (200, json.dumps({**good, "line_id": "L2"}).encode(), "malformed_response"),
        (200, json.dumps({**good, "parameters": {"temperature": "200"}}).encode(), "malformed_response"),
        (200, json.dumps({**good, "model_version_number": 10**6}).encode(), "malformed_response"),
        (200, json.dumps(good).replace("200.0", "NaN").encode(), "unsafe_parameters"),
        (
            200,
            json.dumps({**good, "parameters": {**good["parameters"], "pressure": 10.0}}).encode(),
            "unsafe_parameters",
        ),
        (422, b'{"error": "validation_error", "fallback": "operator", "errors": []}', "rejected"),
        (403, b"", "unauthorized"),
        (503, b"<html>busy</html>", "server_error"),
        (302, b"", "unexpected_status"),
    ]
    for status, body, reason in cases:
        with pytest.raises(EndpointFailure) as info:
            parse_response(status, body, LINE)
        assert info.value.reason == reason, (status, body)


def test_testing_endpoint_validates_requests_naming_the_field(endpoint: TestingEndpoint) -> None:
    import httpx

    bad = {"line_id": "", "lot": {"moisture": 5.0, "hardness": "hard", "density": 1.3}}
    r = httpx.post(endpoint.url + "/v1/recommendations", json=bad, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error" and body["fallback"] == "operator"
    fields = {(e["field"], e["rule"]) for e in body["errors"]}
    assert fields == {("line_id", "required"), ("lot.hardness", "required"), ("lot.impurity", "required")}
    assert httpx.post(endpoint.url + "/v1/recommendations", json=bad).status_code == 401


def test_run_cli_without_endpoint_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--productions", "5", "--seed", "5", "--start", "2026-01-03T12:00:00Z"]
    assert control.cli(argv) == 0
    first = capsys.readouterr().out
    assert control.cli(argv) == 0
    assert capsys.readouterr().out == first
    lines = [json.loads(line) for line in first.splitlines()]
    assert len(lines) == 6 and lines[-1]["summary"] is True and lines[-1]["productions"] == 5
    assert all(rec["set_by_code"] < MODEL_CODE_BASE and rec["fallback_reason"] is None for rec in lines[:-1])
    assert control.cli([*argv[:3], "6", *argv[4:]]) == 0
    assert capsys.readouterr().out != first  # another seed, another line history


def test_run_cli_with_endpoint_reports_decisions_and_reasons(
    endpoint: TestingEndpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_API_KEY", KEY)
    argv = ["--endpoint", endpoint.url, "--productions", "3", "--seed", "5", "--deadline-ms", "2000"]
    assert control.cli(argv) == 0
    *recs, summary = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert [r["set_by"] for r in recs] == ["model:m-7"] * 3
    assert summary["model_decisions"] == 3 and summary["endpoint"]["answered"] == 3
    endpoint.set(kind="unavailable")
    assert control.cli(argv) == 0
    *recs, summary = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert [r["fallback_reason"] for r in recs] == ["model_unavailable"] * 3
    assert summary["endpoint"]["fallback_reasons"] == {"model_unavailable": 3}


def test_run_cli_names_the_missing_key_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_ENV", raising=False)
    with pytest.raises(SystemExit) as info:
        control.cli(["--endpoint", "http://127.0.0.1:9", "--api-key-env", "NO_SUCH_KEY_ENV"])
    assert info.value.code == 2
    assert "NO_SUCH_KEY_ENV" in capsys.readouterr().err


def test_run_cli_rejects_an_endpoint_that_is_not_an_http_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_API_KEY", KEY)
    with pytest.raises(SystemExit) as info:
        control.cli(["--endpoint", "127.0.0.1:8000"])
    assert info.value.code == 2
    assert "endpoint: must be an http(s) URL" in capsys.readouterr().err
