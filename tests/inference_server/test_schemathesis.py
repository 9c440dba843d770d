"""Property-based API testing with schemathesis against the served OpenAPI schema (real HTTP).

No generated input - valid (positive) or schema-violating (negative), with or without a key - may
produce a 5xx; 503 is the one 5xx the contract allows (the operator fallback) and must carry it. Run
against the app in a thread and against `inference-server serve` with its connection limits (issue 14:
the limits sit in front of the app, so they are fuzzed too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_server.core.settings import load_settings
from inference_server.main import create_app
from inference_server.serving.models import ModelCache
from quality_model import registry
from tests.support import hostile
from tests.support.inference import ADMIN_KEY, API_KEY, serve_in_thread, trained

# The suite's short timeouts would cut schemathesis' keep-alive connection between cases: defaults here.
DEFAULT_LIMITS = {"INFERENCE_HEADER_TIMEOUT_S": "5", "INFERENCE_BODY_TIMEOUT_S": "5",
                  "INFERENCE_IDLE_TIMEOUT_S": "5", "INFERENCE_MAX_CONNECTIONS": "512"}  # fmt: skip


@pytest.fixture(scope="module", params=["app_in_thread", "inference_server_serve"])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn in a thread, and `inference-server serve` as the image runs it (httptools,
    uvloop, the connection limits of inference_server.core.limits at their documented defaults)."""
    files = registry.serialize(trained(7.0), 1)
    if request.param == "inference_server_serve":
        with hostile.served(files, DEFAULT_LIMITS) as server:
            yield f"http://127.0.0.1:{server.port}"
        return
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    ModelCache(tmp / "cache").store(files, registry.verify(files))
    cfg = load_settings({}, api_keys=[API_KEY], admin_keys=[ADMIN_KEY], cache_dir=tmp / "cache",
                        spool_dir=tmp / "spool", store_url=str(tmp / "store"), poll_interval_s=3600)  # fmt: skip
    with serve_in_thread(create_app(cfg)) as url:
        yield url


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_server_errors_for_generated_inputs(base_url: str, mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert any(op.path == "/v1/recommendations" for op in operations)
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations])
    keys = st.sampled_from([API_KEY, ADMIN_KEY, "not-a-valid-key-000000", None])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=strategy, key=keys)
    def check(case: schemathesis.Case, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        assert response.status_code < 500 or response.status_code == 503, (case.path, response.text)
        if response.status_code == 503:
            body = response.json()
            assert body["fallback"] == "operator" and body["error"] in (
                "model_unavailable",
                "deadline_exceeded",
                "store_unavailable",
                "out_of_support",
                "low_predicted_quality",
                "no_feasible_setting",
            )
        if response.status_code == 200 and case.path == "/v1/recommendations":
            assert set(response.json()["parameters"]) == {"temperature", "feed_rate", "pressure"}

    check()
