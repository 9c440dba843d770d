"""The inference API over real HTTP: a real uvicorn on 127.0.0.1 (in a thread, or as a process).

Covers the contract's status codes and bodies, readiness, the server-side deadline, hot swap under
concurrent load, starting with the cloud unreachable, tampered models, and decision shipping to S3.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, Request

from factory_core import layout
from factory_core.outbox.spool import Spool
from factory_core.store import LocalDirStore, S3Store
from factory_sim.productions import productions_frame
from inference_server.api.deps import require_admin_key, require_api_key
from inference_server.api.routes import OnePassJSONRoute
from inference_server.api.schemas import RecommendationRequest
from inference_server.core.settings import Settings, load_settings
from inference_server.main import create_app
from inference_server.serving.decision_log import decode_segment
from inference_server.serving.models import ModelCache
from quality_model import registry
from quality_model import training as trainer
from quality_model.search.recommender import NoFeasibleSetting
from tests.support.inference import (
    ADMIN_KEY,
    API_KEY,
    auth,
    bound_socket,
    client,
    lot_body,
    serve_in_thread,
    serving_lines,
    trained,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files_v1() -> dict[str, bytes]:
    return registry.serialize(serving_lines(trained(7.0), "L1", "L2"), 1)  # the tests use both lines


@pytest.fixture(scope="module")
def files_v2() -> dict[str, bytes]:
    model = trainer.train(productions_frame(4.0, start_day=20.0), quality_rounds=40, fault_rounds=40)
    return registry.serialize(model, 2)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "api_keys": [API_KEY],
        "admin_keys": [ADMIN_KEY],
        "cache_dir": tmp_path / "cache",
        "spool_dir": tmp_path / "spool",
        "poll_interval_s": 0.1,
        "ship_interval_s": 0.1,
        "segment_max_age_s": 0.2,
    }
    return load_settings({}, **{**base, **overrides})


def put_version(store: Any, files: dict[str, bytes]) -> str:
    version = json.loads(files[registry.META_FILE])["version"]
    for name in (*registry.MODEL_FILES, registry.META_FILE):
        store.put(layout.version_key(version, name), files[name])
    return version


def cache_model(cache_dir: Path, files: dict[str, bytes]) -> None:
    ModelCache(cache_dir).store(files, registry.verify(files))


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# ------------------------------------------------------------------------------------------- contract


@pytest.fixture
def served(tmp_path: Path, files_v1: dict[str, bytes]) -> Any:
    cache_model(tmp_path / "cache", files_v1)
    app = create_app(settings_for(tmp_path))
    with serve_in_thread(app) as url, client(url) as c:
        yield app, c


def test_recommendation_contract(served: Any) -> None:
    _, c = served
    r = c.post("/v1/recommendations", json={**lot_body(), "lot_id": "L1-7"}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"request_id", "line_id", "model_version", "model_version_number", "parameters",
                         "predicted_quality", "predicted_fault_risk", "predicted_quality_uncertainty",
                         "support", "latency_ms"}  # fmt: skip
    # what the model knows of the lot: how far from its history, how sure of the predicted quality
    assert set(body["support"]) == {"lot_distance", "leverage"}
    assert 0 <= body["support"]["leverage"] < 25 and body["predicted_quality_uncertainty"] > 0
    assert body["line_id"] == "L1" and body["model_version_number"] == 1
    assert set(body["parameters"]) == {"temperature", "feed_rate", "pressure"}
    assert r.headers["x-request-id"] == body["request_id"]
    assert c.get("/health/live").json() == {"status": "live"}
    assert c.get("/health/ready").json()["model_version"] == body["model_version"]
    metrics = c.get("/metrics").text
    assert 'inference_latency_seconds_bucket{le="0.00025"}' in metrics
    assert 'inference_requests_total{outcome="ok"} 1.0' in metrics
    assert (
        c.get("/docs").status_code == 200 and "/v1/recommendations" in c.get("/openapi.json").json()["paths"]
    )


def test_missing_or_wrong_key_is_401(served: Any) -> None:
    _, c = served
    for headers in ({}, auth("wrong-key-0123456789"), {"Authorization": f"Basic {API_KEY}"}, auth(ADMIN_KEY)):
        r = c.post("/v1/recommendations", json=lot_body(), headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"] == "unauthorized" and r.json()["fallback"] == "operator"
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/admin/reload", headers=auth(API_KEY)).status_code == 401  # API key is not admin
    assert c.post("/admin/reload", headers=auth(ADMIN_KEY)).status_code == 200


@pytest.mark.parametrize(
    ("raw", "field", "rule"),
    [
        (
            b'{"line_id":"L1","lot":{"moisture":NaN,"hardness":65,"density":1.3,"impurity":0.5}}',
            "lot.moisture",
            "finite_number",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":6,"hardness":Infinity,"density":1.3,"impurity":0.5}}',
            "lot.hardness",
            "finite_number",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":-1e999,"impurity":0.5}}',
            "lot.density",
            "finite_number",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":9.0,"impurity":0.5}}',
            "lot.density",
            "less_than_equal",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":-1,"hardness":65,"density":1.3,"impurity":0.5}}',
            "lot.moisture",
            "greater_than_equal",
        ),
        (b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3}}', "lot.impurity", "missing"),
        (
            b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5,"x":1}}',
            "lot.x",
            "extra_forbidden",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":"6","hardness":65,"density":1.3,"impurity":0.5}}',
            "lot.moisture",
            "float_type",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":true,"hardness":65,"density":1.3,"impurity":0.5}}',
            "lot.moisture",
            "float_type",
        ),
        (
            b'{"line_id":7,"lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5}}',
            "line_id",
            "string_type",
        ),
        (
            b'{"line_id":"L/1","lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5}}',
            "line_id",
            "string_pattern_mismatch",
        ),
        (
            b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5},"extra":1}',
            "extra",
            "extra_forbidden",
        ),
        (b'{"line_id":"L1",', "body", "json_invalid"),
        (b"[]", "body", "model_attributes_type"),
    ],
)
def test_validation_errors_name_field_and_rule(served: Any, raw: bytes, field: str, rule: str) -> None:
    _, c = served
    r = c.post("/v1/recommendations", content=raw, headers={**auth(), "content-type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error" and body["fallback"] == "operator"
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in body["errors"]
    ], body


def test_body_too_large_is_413(served: Any) -> None:
    _, c = served
    big = json.dumps({**lot_body(), "lot_id": "x" * 10_000}).encode()
    r = c.post("/v1/recommendations", content=big, headers={**auth(), "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    def chunks() -> Any:  # no Content-Length: counted while streaming
        yield b'{"line_id":"L1","lot":{'
        for _ in range(100):
            yield b" " * 100
        yield b"}}"

    r = c.post(
        "/v1/recommendations", content=chunks(), headers={**auth(), "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_declared_length_within_limit_does_not_bypass_counting(tmp_path: Path, http: str) -> None:
    """Content-Length: 10 plus a 10 kB chunked body: h11 hands the app the chunked body (Transfer-Encoding
    wins), httptools refuses the request. Either way no body over the limit reaches validation."""
    pytest.importorskip(http)
    app = create_app(settings_for(tmp_path))
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, http=http, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started)
        body = json.dumps({**lot_body(), "lot_id": "x" * 10_000}).encode()
        head = (
            f"POST /v1/recommendations HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        with socket.create_connection(sock.getsockname(), timeout=10) as conn:
            conn.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}") and not answer.endswith(b"received."):  # JSON or uvicorn's text
                chunk = conn.recv(65536)
                assert chunk, answer
                answer += chunk
        if http == "h11":
            assert answer.startswith(b"HTTP/1.1 413 ") and b'"error":"body_too_large"' in answer, answer
        else:
            assert answer.startswith(b"HTTP/1.1 400 "), answer
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


_LOT = b'"lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5}'
ONE_PASS = "application/json"  # served by OnePassJSONRoute's one-pass parse + validate
GENERIC = "application/json; charset=utf-8"  # any other JSON content type: FastAPI's generic handler


@pytest.mark.parametrize(
    "raw",
    [
        b'{"line_id":"L1",' + _LOT + b"}",
        b'{"line_id":"L1","lot_id":"L1-7",' + _LOT + b"}",
        b'{"line_id":"L1","lot_id":null,' + _LOT + b"}",
        b'{"line_id":"L1","lot":{"moisture":6e0,"hardness":65.0E0,"density":13e-1,"impurity":-0}}',
        b'{"line_id":"L\\u0031",' + _LOT + b"}",  # escaped "1"
        b'{"line_id":"L1","line_id":"L2",' + _LOT + b"}",  # duplicate key: the last one wins
        b'\xef\xbb\xbf{"line_id":"L1",' + _LOT + b"}",  # UTF-8 BOM: only the generic parser takes it
        b' \n{"line_id":"L1",' + _LOT + b"}\n",
        b'{"line_id":"L1","lot":{"moisture":NaN,"hardness":65,"density":1.3,"impurity":0.5}}',
        b'{"line_id":"L1","lot":{"moisture":6,"hardness":-Infinity,"density":1.3,"impurity":0.5}}',
        b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":1e400}}',
        b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5,"x":1}}',
        b'{"line_id":"L1",' + _LOT + b',"extra":1}',
        b'{"line_id":"L1","lot":{"moisture":6,"hardness":65,"density":1.3}}',
        b'{"lot":{"moisture":"6","hardness":true,"density":1.3,"impurity":0.5}}',
        b'{"line_id":"L1","lot":[6,65,1.3,0.5]}',
        b'{"line_id":"L1","lot_id":"",' + _LOT + b"}",
        b'{"line_id":"\\ud800",' + _LOT + b"}",  # lone surrogate
        b'{"line_id":"L1",' + _LOT + b"} x",
        b'{"line_id":"L1",',
        b"[]",
        b"null",
        b"   ",
    ],
)
def test_one_pass_and_generic_paths_agree(served: Any, raw: bytes) -> None:
    """The one-pass parser accepts a body only if FastAPI's generic path does, with the same values; a
    body it refuses is reported by the generic path - the same status and body either way."""
    _, c = served
    answers = []
    for content_type in (ONE_PASS, GENERIC):
        r = c.post("/v1/recommendations", content=raw, headers={**auth(), "content-type": content_type})
        body = r.json()
        assert r.status_code in (200, 422) and r.headers["x-request-id"], r.text
        assert body["request_id"] == r.headers["x-request-id"]  # every answer, 422 included
        body = {k: v for k, v in body.items() if k not in ("request_id", "latency_ms")}
        answers.append((r.status_code, body))
    assert answers[0] == answers[1]


def test_content_type_and_empty_body(served: Any) -> None:
    _, c = served
    raw = json.dumps(lot_body()).encode()
    for headers in ({"content-type": "text/plain"}, {}):  # not declared as JSON: 415 naming the type
        r = c.post("/v1/recommendations", content=raw, headers={**auth(), **headers})
        assert r.status_code == 415 and r.headers["x-request-id"]
        assert r.json()["error"] == "unsupported_media_type" and "application/json" in r.json()["detail"]
    r = c.post("/v1/recommendations", content=b"", headers={**auth(), "content-type": ONE_PASS})
    assert r.status_code == 422
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("body", "missing")]
    r = c.post("/v1/recommendations", content=raw, headers={**auth(), "content-type": "application/x+json"})
    assert r.status_code == 200, r.text


def test_key_is_checked_before_the_body(served: Any) -> None:
    """Without a valid key nothing about the body is revealed (nor parsed)."""
    _, c = served
    nan_body = b'{"line_id":"L1","lot":{"moisture":NaN,"hardness":65,"density":1.3,"impurity":0.5}}'
    for raw in (b'{"line_id":', nan_body, b"[]"):
        for headers in ({}, auth("wrong-key-0123456789")):
            r = c.post("/v1/recommendations", content=raw, headers={**headers, "content-type": ONE_PASS})
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text


def test_openapi_describes_body_security_and_responses(served: Any) -> None:
    _, c = served
    spec = c.get("/openapi.json").json()
    op = spec["paths"]["/v1/recommendations"]["post"]
    assert op["requestBody"]["required"] is True
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendationRequest"
    }
    assert op["security"] == [{"api_key": []}]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendationResponse"
    }
    assert {"401", "413", "422", "503"} <= set(op["responses"])
    schemas = spec["components"]["schemas"]
    request = schemas["RecommendationRequest"]
    assert request["additionalProperties"] is False and set(request["required"]) == {"line_id", "lot"}
    assert schemas["LotFigures"]["properties"]["moisture"]["minimum"] == 1.0
    schemes = spec["components"]["securitySchemes"]
    assert schemes["api_key"]["type"] == "http" and schemes["api_key"]["scheme"] == "bearer"
    assert schemes["admin_key"]["type"] == "http" and schemes["admin_key"]["scheme"] == "bearer"
    for path in ("/admin/reload", "/admin/promote"):
        assert spec["paths"][path]["post"]["security"] == [{"admin_key": []}]
    assert "swagger-ui" in c.get("/docs").text


def test_one_pass_route_refuses_a_declaration_it_cannot_serve() -> None:
    """It runs only the API-key check: a route declaring anything else must not be served by it."""

    async def endpoint(body: RecommendationRequest, request: Request) -> None:
        return None

    async def no_request(body: RecommendationRequest) -> None:
        return None

    router = APIRouter()
    router.add_api_route("/ok", endpoint, methods=["POST"], dependencies=[Depends(require_api_key)],
                         route_class_override=OnePassJSONRoute)  # fmt: skip
    for call, deps in (
        (endpoint, [Depends(require_admin_key)]),
        (endpoint, [Depends(require_api_key), Depends(require_admin_key)]),
        (endpoint, []),
        (no_request, [Depends(require_api_key)]),
    ):
        with pytest.raises(TypeError, match="runs only require_api_key"):
            router.add_api_route(
                "/x", call, methods=["POST"], dependencies=deps, route_class_override=OnePassJSONRoute
            )


def test_decision_record_fields(tmp_path: Path, files_v1: dict[str, bytes]) -> None:
    """Each request's decision as docs/inference.md lists it; ``ts`` is ISO 8601 UTC (formatted by the
    writer from the request's time)."""
    cache_model(tmp_path / "cache", files_v1)
    app = create_app(settings_for(tmp_path))
    before = datetime.now(UTC)
    with serve_in_thread(app) as url, client(url) as c:
        ok = c.post("/v1/recommendations", json={**lot_body(), "lot_id": "L1-9"}, headers=auth()).json()
        manager = app.state.manager
        manager.current = dataclasses.replace(manager.current, recommender=Infeasible())
        refused = c.post("/v1/recommendations", json=lot_body(line="L2"), headers=auth()).json()
    after = datetime.now(UTC)
    spool = Spool(tmp_path / "spool")
    records = {r["request_id"]: r for e in spool.entries() for r in decode_segment(spool.read(e)[1])}
    assert set(records) == {ok["request_id"], refused["request_id"]}
    common = {"ts", "request_id", "line_id", "lot_id", "lot", "model_version", "model_version_number",
              "status", "outcome", "latency_ms"}  # fmt: skip
    good = records[ok["request_id"]]
    assert set(good) == common | {"parameters", "predicted_quality", "predicted_fault_risk",
                                  "predicted_quality_uncertainty", "support"}  # fmt: skip
    assert set(good["support"]) == {"lot_distance", "leverage"} and good["support"] == ok["support"]
    assert good["status"] == 200 and good["outcome"] == "ok" and good["lot_id"] == "L1-9"
    assert good["lot"] == {"moisture": 6.0, "hardness": 65.0, "density": 1.3, "impurity": 0.6}
    assert good["parameters"] == ok["parameters"] and good["latency_ms"] == ok["latency_ms"]
    assert (good["model_version"], good["model_version_number"]) == (ok["model_version"], 1)
    bad = records[refused["request_id"]]
    assert set(bad) == common | {"detail"}
    assert (bad["status"], bad["outcome"], bad["line_id"], bad["lot_id"]) == (
        503,
        "no_feasible_setting",  # the model's own refusal, by its reason
        "L2",
        None,
    )
    for r in (good, bad):
        ts = datetime.fromisoformat(r["ts"])
        assert r["ts"].endswith("+00:00") and before <= ts <= after


class Infeasible:
    """A recommender that never finds a feasible setting (the operator decides)."""

    bounded_cost = True

    def recommend(self, lot: Any) -> Any:
        raise NoFeasibleSetting("no candidate inside the support of history")


class SlowRecommender:
    """Wraps a real recommender and sleeps first: an injected slow model."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def recommend(self, lot: Any) -> Any:
        time.sleep(self.delay_s)
        return self.inner.recommend(lot)


def test_deadline_exceeded_returns_fallback(tmp_path: Path, files_v1: dict[str, bytes]) -> None:
    cache_model(tmp_path / "cache", files_v1)
    app = create_app(settings_for(tmp_path, deadline_s=0.05))
    with serve_in_thread(app) as url, client(url) as c:
        manager = app.state.manager
        manager.current = dataclasses.replace(
            manager.current, recommender=SlowRecommender(manager.current.recommender, 0.5)
        )
        r = c.post("/v1/recommendations", json=lot_body(), headers=auth())
        assert r.status_code == 503
        body = r.json()
        assert body["error"] == "deadline_exceeded" and body["fallback"] == "operator" and body["request_id"]


# ------------------------------------------------------------------------------------ model lifecycle


def test_not_ready_without_model(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))  # no cache, no store
    with serve_in_thread(app) as url, client(url) as c:
        assert c.get("/health/live").status_code == 200
        ready = c.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["error"] == "model_unavailable"
        r = c.post("/v1/recommendations", json=lot_body(), headers=auth())
        assert r.status_code == 503
        assert r.json()["error"] == "model_unavailable" and r.json()["fallback"] == "operator"


def test_tampered_cache_is_refused(
    tmp_path: Path, files_v1: dict[str, bytes], files_v2: dict[str, bytes]
) -> None:
    cache_model(tmp_path / "cache", files_v1)
    cache_model(tmp_path / "cache", files_v2)  # current = v2
    v2 = json.loads(files_v2[registry.META_FILE])["version"]
    path = tmp_path / "cache" / "versions" / v2 / registry.FAULT_FILE
    blob = bytearray(path.read_bytes())
    blob[100] ^= 0x10
    path.write_bytes(bytes(blob))
    app = create_app(settings_for(tmp_path))
    with serve_in_thread(app) as url, client(url) as c:
        ready = c.get("/health/ready").json()
        assert ready["model_version_number"] == 1  # fell back to the last good cached version
        assert 'inference_model_swap_failures_total{reason="cache_verify"} 1.0' in c.get("/metrics").text


def test_hot_swap_under_concurrent_load(
    tmp_path: Path, files_v1: dict[str, bytes], files_v2: dict[str, bytes]
) -> None:
    store = LocalDirStore(tmp_path / "store")
    v1 = put_version(store, files_v1)
    v2 = put_version(store, files_v2)
    registry.promote(store, v1)
    app = create_app(settings_for(tmp_path, store_url=str(tmp_path / "store")))
    with serve_in_thread(app) as url:
        with client(url) as c:
            assert wait_until(lambda: c.get("/health/ready").status_code == 200)
        stop = threading.Event()
        results: list[tuple[int, str | None]] = []
        lock = threading.Lock()

        def hammer(i: int) -> None:
            with client(url) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        r = c.post(
                            "/v1/recommendations", json=lot_body(moisture=4 + (n % 50) * 0.1), headers=auth()
                        )
                        item = (r.status_code, r.json().get("model_version"))
                    except httpx.HTTPError as exc:
                        item = (0, repr(exc))
                    with lock:
                        results.append(item)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        try:
            assert wait_until(lambda: len(results) > 20)
            registry.promote(store, v2)  # the poller picks it up and swaps while requests run
            assert wait_until(lambda: any(v == v2 for _, v in results[-20:]))
            # A tampered version promoted behind the registry's back is refused; v2 keeps serving.
            files_v3 = registry.serialize(trained(7.0), 3)
            bad = bytearray(files_v3[registry.QUALITY_FILE])
            bad[50] ^= 0x01
            v3 = put_version(store, {**files_v3, registry.QUALITY_FILE: bytes(bad)})
            store.put(
                layout.POINTER_KEY,
                json.dumps({"version": v3, "version_number": 3, "history": [v2]}).encode(),
            )
            with client(url) as c:
                assert wait_until(lambda: 'reason="verify"} 1.0' in c.get("/metrics").text)
            n_before = len(results)
            assert wait_until(lambda: len(results) > n_before + 20)
        finally:
            stop.set()
            for t in threads:
                t.join()
    failures = [r for r in results if r[0] != 200]
    assert failures == []
    assert {v for _, v in results} == {v1, v2}
    assert results[-1][1] == v2


def test_decisions_shipped_to_s3(
    tmp_path: Path, moto_server: str, s3_bucket: str, files_v1: dict[str, bytes]
) -> None:
    store = S3Store(s3_bucket, endpoint_url=moto_server)
    registry.promote(store, put_version(store, files_v1))
    settings = settings_for(
        tmp_path, store_url=f"s3://{s3_bucket}", store_endpoint_url=moto_server, instance_id="t1"
    )
    app = create_app(settings)
    ids = []
    with serve_in_thread(app) as url, client(url) as c:
        assert wait_until(lambda: c.get("/health/ready").status_code == 200)
        for i in range(30):
            body = lot_body(moisture=5 + i * 0.05, line="L2" if i % 3 == 0 else "L1")
            ids.append(c.post("/v1/recommendations", json=body, headers=auth()).json()["request_id"])

        def shipped() -> list[dict[str, Any]]:
            keys = list(store.list("decisions/"))
            return [r for k in keys for r in decode_segment(store.get(k))]

        assert wait_until(lambda: len(shipped()) == 30)
    records = shipped()
    assert sorted(r["request_id"] for r in records) == sorted(ids)
    keys = list(store.list("decisions/"))
    assert all(
        k.startswith(("decisions/line=L1/date=", "decisions/line=L2/date=")) and "/t1-" in k for k in keys
    )
    assert all(r["model_version_number"] == 1 and r["status"] == 200 for r in records)
    assert list((tmp_path / "spool").glob("*.spl")) == []  # deleted only after the store confirmed


def test_admin_promote_over_http(
    tmp_path: Path, files_v1: dict[str, bytes], files_v2: dict[str, bytes]
) -> None:
    store = LocalDirStore(tmp_path / "store")
    v1 = put_version(store, files_v1)
    v2 = put_version(store, files_v2)
    registry.promote(store, v1)
    app = create_app(settings_for(tmp_path, store_url=str(tmp_path / "store"), poll_interval_s=3600))
    with serve_in_thread(app) as url, client(url) as c:
        assert wait_until(lambda: c.get("/health/ready").status_code == 200)
        assert c.post("/admin/promote", json={"version": v2}, headers=auth(API_KEY)).status_code == 401
        r = c.post("/admin/promote", json={"version": v2}, headers=auth(ADMIN_KEY))
        assert r.status_code == 200 and r.json()["model_version"] == v2
        missing = c.post("/admin/promote", json={"version": "v00009-0123456789ab"}, headers=auth(ADMIN_KEY))
        assert missing.status_code == 404
    assert registry.read_pointer(store)["version"] == v2


# ----------------------------------------------------------------------------- real process, no cloud


def _spawn(tmp_path: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "INFERENCE_API_KEYS": API_KEY,
        "INFERENCE_ADMIN_KEYS": ADMIN_KEY,
        "INFERENCE_CACHE_DIR": str(tmp_path / "cache"),
        "INFERENCE_SPOOL_DIR": str(tmp_path / "spool"),
        "INFERENCE_POLL_INTERVAL_S": "0.2",
        "INFERENCE_SHIP_INTERVAL_S": "0.2",
        "INFERENCE_SEGMENT_MAX_AGE_S": "0.2",
        "INFERENCE_STORE_CONNECT_TIMEOUT_S": "0.5",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **extra_env,
    }
    cmd = [sys.executable, "-m", "inference_server.cli", "serve", "--port", str(port)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("cached", [True, False])
def test_process_starts_with_s3_unreachable(tmp_path: Path, files_v1: dict[str, bytes], cached: bool) -> None:
    if cached:
        cache_model(tmp_path / "cache", files_v1)
    port = closed_port()
    dead_s3 = f"http://127.0.0.1:{closed_port()}"
    proc = _spawn(
        tmp_path, port, {"INFERENCE_STORE_URL": "s3://models", "INFERENCE_STORE_ENDPOINT_URL": dead_s3}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with client(base) as c:

            def live() -> bool:
                try:
                    return c.get("/health/live").status_code == 200
                except httpx.HTTPError:
                    return False

            assert wait_until(live, timeout_s=60), (
                proc.stderr.read1().decode() if proc.poll() is not None else ""
            )
            r = c.post("/v1/recommendations", json=lot_body(), headers=auth())
            ready = c.get("/health/ready")
            if cached:
                assert ready.status_code == 200 and r.status_code == 200, r.text
                assert r.json()["model_version_number"] == 1
                assert wait_until(lambda: "inference_pointer_poll_errors_total" in c.get("/metrics").text)
            else:
                assert ready.status_code == 503 and ready.json()["error"] == "model_unavailable"
                assert r.status_code == 503 and r.json()["error"] == "model_unavailable"
                assert r.json()["fallback"] == "operator"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (
            0,
            -signal.SIGTERM,
        )  # uvicorn re-raises the signal after a clean shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Nothing was lost while the cloud was away: the decision waits in the local spool.
    spool = Spool(tmp_path / "spool")
    spooled = [r for e in spool.entries() for r in decode_segment(spool.read(e)[1])]
    assert len(spooled) == 1 and spooled[0]["status"] == (200 if cached else 503)


def test_fast_json_response_renders_valid_json_only() -> None:
    """pydantic-core renders the body; a non-finite float is refused (never the invalid token
    Infinity/NaN on the wire), and a string that merely contains that text is rendered normally."""
    from inference_server.api.errors import FastJSONResponse

    body = {"line_id": "NaN-Infinity", "q": 95.25, "r": 1e-6, "n": 3, "text": "é"}
    rendered = FastJSONResponse(body).body
    assert json.loads(rendered) == body
    assert FastJSONResponse({"q": 0.1}).body == b'{"q":0.1}'
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValueError):
            FastJSONResponse({"q": bad})


def test_request_stats_expose_what_prometheus_counter_and_histogram_would() -> None:
    """The lock-free request stats render exactly like prometheus_client's Counter and Histogram fed
    the same updates (bucket edges included: a value equal to a bound counts in that bucket)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from inference_server.core.metrics import LATENCY_BUCKETS, OUTCOMES, Metrics

    ours = Metrics()
    ref = CollectorRegistry()
    counter = Counter("inference_requests", "Recommendation requests by outcome", ["outcome"], registry=ref)
    hist = Histogram("inference_latency_seconds", "Server-side recommendation latency",
                     buckets=LATENCY_BUCKETS, registry=ref)  # fmt: skip
    for outcome in OUTCOMES:  # every outcome is exported from the start, at 0
        counter.labels(outcome)
    values = [*LATENCY_BUCKETS, 0.0, 0.00005, 0.0003, 0.0123, 3.0, 0.00025, 1e-7]
    for i, v in enumerate(values):
        outcome = ("ok", "ok", "model_unavailable", "deadline_exceeded")[i % 4]
        ours.request_stats.count(outcome)
        counter.labels(outcome).inc()
        ours.request_stats.observe(v)
        hist.observe(v)

    def series(registry: CollectorRegistry, prefix: str) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if line.startswith(prefix) and "_created" not in line]

    for prefix in ("inference_requests_total", "inference_latency_seconds"):
        assert series(ours.registry, prefix) == series(ref, prefix), prefix


def test_request_id_prefix_is_redrawn_in_a_forked_child() -> None:
    from inference_server.api.errors import _ids

    parent = _ids.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its first id and leave without running any cleanup
        os.write(write, _ids.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == len(parent) == 32
    assert child[:16] != parent[:16]
    assert _ids.next()[:16] == parent[:16]
