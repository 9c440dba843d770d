"""Routes: POST /v1/recommendations (the hot path), health, metrics and the admin actions.

Why one function that installs them: the routes close over the app's settings and metrics (nothing in
module globals), so tests can run several apps in one process; `main.create_app` calls it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from factory_core.store import ObjectNotFoundError, ObjectStore, StoreError, open_store
from inference_server.api.deps import require_admin_key, require_api_key
from inference_server.api.errors import (
    ApiError,
    FastJSONResponse,
    error_response,
    request_id,
    validation_response,
)
from inference_server.api.guards import AuthFirstRoute, require_json_body
from inference_server.api.schemas import (
    AdminResult,
    ErrorBody,
    FallbackError,
    PromoteRequest,
    RecommendationRequest,
    RecommendationResponse,
    ValidationErrorBody,
)
from inference_server.core.metrics import Metrics
from inference_server.core.settings import Settings
from inference_server.serving.decision_log import DecisionLog
from inference_server.serving.models import ModelManager
from quality_model.features import LOT_FEATURES
from quality_model.registry import LoadedModel, ModelVerificationError
from quality_model.search.recommender import NoFeasibleSetting

log = logging.getLogger(__name__)
SHUTDOWN_SHIP_TIMEOUT_S = 5.0


def build_store(settings: Settings) -> ObjectStore | None:
    """The object store from settings; creating it never touches the network."""
    if not settings.store_url:
        return None
    return open_store(
        settings.store_url,
        endpoint_url=settings.store_endpoint_url,
        max_attempts=1,
        connect_timeout=settings.store_connect_timeout_s,
        read_timeout=max(5.0, settings.store_connect_timeout_s),
    )


class OnePassJSONRoute(APIRoute):
    """POST /v1/recommendations: declared like any FastAPI route, served on a one-pass request path.

    The declaration (``body: RecommendationRequest``, ``Depends(require_api_key)``, response model) is
    FastAPI's, so OpenAPI describes the request body, the bearer security and the responses as before.
    Per request, FastAPI's generic handler decodes the JSON with ``json.loads``, resolves the dependencies,
    validates the resulting dict and builds a sub-response for them - about a third of our per-request
    overhead. Here the API key is checked first (before the body is read), then a body sent as
    ``Content-Type: application/json`` is parsed AND validated by pydantic in one pass over the raw
    bytes (``model_validate_json``) and handed to the same endpoint function. Anything else - another
    content type, a body that fails validation - goes through FastAPI's generic handler, so every 4xx
    body is exactly the one the generic path produces (the one-pass parser only ever accepts bodies the
    generic path accepts too, with the same values).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        calls = [d.call for d in self.dependant.dependencies]
        body = [(p.name, p.field_info.annotation) for p in self.dependant.body_params]
        request = self.dependant.request_param_name
        if calls != [require_api_key] or body != [("body", RecommendationRequest)] or request != "request":
            raise TypeError(
                f"{type(self).__name__} runs only require_api_key, for endpoint(body: RecommendationRequest,"
                " request: Request)"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()
        endpoint = self.endpoint
        validate_json = RecommendationRequest.model_validate_json

        async def handler(request: Request) -> Response:
            await require_api_key(request)
            if request.headers.get("content-type") != "application/json":
                require_json_body(request)  # 415 for a body not declared as JSON
            else:
                raw = await request.body()  # a streamed body over the limit raises 413 here (BodyLimit)
                try:
                    body = validate_json(raw)
                except ValidationError:
                    pass  # the generic handler below reports it: the same 422 body, field and rule
                else:
                    return await endpoint(body=body, request=request)
            return await generic(request)

        return handler


def line_not_served(request: Request, line_id: str, model: LoadedModel) -> Response:
    """422 for a line the serving model was not trained for (another line's model is never used)."""
    served = ", ".join(sorted(model.lines)) or "none"
    message = f"line {line_id!r} is not served by model {model.version}; lines served: {served}"
    return validation_response(request, [{"field": "line_id", "rule": "line_not_served", "message": message}])


def _finite(value: float) -> float | None:
    """JSON has no NaN: an unknown figure is null."""
    return round(value, 4) if math.isfinite(value) else None


def install_routes(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Add every route to ``app``; the lifespan puts the model manager and decision log on app.state."""
    # label lookups take a lock and hash the labels: resolve the children once
    stats = metrics.request_stats

    state = app.state  # the lifespan sets manager and decisions on it
    lot_values = operator.attrgetter(*LOT_FEATURES)  # pydantic floats, in the model's input order

    async def recommend(body: RecommendationRequest, request: Request) -> Any:
        started = time.perf_counter()
        rid = request_id(request)
        model = state.manager.current  # read once: a swap cannot change it under us
        if model is not None and body.line_id not in model.lines:
            return line_not_served(request, body.line_id, model)  # no decision: no prefix for it
        lot = lot_values(body.lot)
        record: dict[str, Any] = {
            "ts": time.time(),  # formatted (ISO 8601 UTC) and serialized by DecisionLog.append
            "request_id": rid,
            "line_id": body.line_id,
            "lot_id": body.lot_id,
            "lot": dict(zip(LOT_FEATURES, lot, strict=True)),
            "model_version": model.version if model else None,
            "model_version_number": model.version_number if model else None,
        }
        decisions: DecisionLog = state.decisions

        def fallback(error: str, detail: str) -> JSONResponse:
            latency = (time.perf_counter() - started) * 1e3
            stats.count(error)
            decisions.append(
                {**record, "status": 503, "outcome": error, "detail": detail, "latency_ms": latency}
            )
            return error_response(request, 503, error, detail)

        if model is None:
            return fallback("model_unavailable", "no verified model is loaded")
        search = model.recommender
        try:
            if getattr(search, "bounded_cost", False):
                # Bounded work (the compiled search kernel: tens of microseconds) runs inline: a
                # worker-thread hop would cost more than the search. Overruns are still refused below.
                rec = search.recommend(lot)
            else:  # anything else can run long: a worker thread the deadline can abandon
                remaining = settings.deadline_s - (time.perf_counter() - started)
                rec = await asyncio.wait_for(
                    asyncio.to_thread(search.recommend, lot), timeout=max(remaining, 0.0)
                )
        except TimeoutError:
            return fallback(
                "deadline_exceeded",
                f"no recommendation within the {settings.deadline_s * 1e3:.0f} ms deadline",
            )
        except NoFeasibleSetting as exc:  # the model's own refusal, with its reason
            return fallback(exc.reason, str(exc))
        elapsed = time.perf_counter() - started
        if elapsed > settings.deadline_s:
            return fallback("deadline_exceeded", f"recommendation took {elapsed * 1e3:.1f} ms > deadline")
        latency_ms = elapsed * 1e3
        stats.observe(elapsed)
        stats.count("ok")
        support = {"lot_distance": _finite(rec.lot_distance), "leverage": _finite(rec.leverage)}
        uncertainty = _finite(rec.quality_uncertainty)
        record.update(status=200, outcome="ok", parameters=rec.parameters,
                      predicted_quality=rec.predicted_quality, predicted_fault_risk=rec.predicted_fault_risk,
                      predicted_quality_uncertainty=uncertainty, support=support,
                      latency_ms=latency_ms)  # fmt: skip
        decisions.append(record)
        out = {
            "request_id": rid,
            "line_id": body.line_id,
            "model_version": model.version,
            "model_version_number": model.version_number,
            "parameters": rec.parameters,
            "predicted_quality": rec.predicted_quality,
            "predicted_fault_risk": rec.predicted_fault_risk,
            "predicted_quality_uncertainty": uncertainty,
            "support": support,
            "latency_ms": latency_ms,
        }
        return FastJSONResponse(out, headers={"X-Request-ID": rid})

    app.router.add_api_route(
        "/v1/recommendations",
        recommend,
        methods=["POST"],
        response_model=RecommendationResponse,
        dependencies=[Depends(require_api_key)],
        responses={
            401: {"model": ErrorBody, "description": "missing or wrong API key"},
            413: {"model": ErrorBody, "description": "body too large"},
            415: {"model": ErrorBody, "description": "body not declared as application/json"},
            422: {"model": ValidationErrorBody, "description": "invalid request (field + rule named)"},
            503: {"model": FallbackError, "description": "no recommendation: the operator decides"},
        },
        route_class_override=OnePassJSONRoute,
    )
    # the router tries routes in order: put the hot route before FastAPI's /openapi.json and /docs ones
    app.router.routes.insert(0, app.router.routes.pop())

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        """The process answers (touches neither the store nor the model)."""
        return {"status": "live"}

    @app.get("/health/ready", responses={503: {"model": ErrorBody}})
    async def ready(request: Request) -> Any:
        """Ready when a verified model is loaded."""
        model = request.app.state.manager.current
        if model is None:
            return error_response(request, 503, "model_unavailable", "no verified model is loaded")
        return {
            "status": "ready",
            "model_version": model.version,
            "model_version_number": model.version_number,
        }

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    admin = APIRouter(route_class=AuthFirstRoute, dependencies=[Depends(require_admin_key)])

    @admin.post("/admin/reload", response_model=AdminResult, responses={401: {"model": ErrorBody}})
    async def reload(request: Request) -> AdminResult:
        """Poll the serving pointer now (instead of waiting for the interval)."""
        manager: ModelManager = request.app.state.manager
        detail = await asyncio.to_thread(manager.sync_once)
        current = manager.current
        return AdminResult(status="ok", model_version=current.version if current else None, detail=detail)

    @admin.post("/admin/promote", response_model=AdminResult,
                responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody},
                           415: {"model": ErrorBody}, 422: {"model": ValidationErrorBody}, 503: {"model": ErrorBody}})  # fmt: skip
    async def promote(body: PromoteRequest, request: Request) -> AdminResult:
        """Verify a published version, point serving at it, and swap to it."""
        manager: ModelManager = request.app.state.manager
        try:
            pointer = await asyncio.to_thread(manager.promote, body.version)
        except ObjectNotFoundError:
            raise ApiError(404, "not_found", f"version {body.version} is not in the registry") from None
        except ModelVerificationError as exc:
            raise ApiError(409, "model_refused", str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, "store_unavailable", str(exc)) from None
        current = manager.current
        detail = f"promoted {body.version}"
        if pointer.get("replaced"):
            detail += f"; replaced an unreadable serving pointer: {pointer['replaced']}"
        return AdminResult(status="ok", model_version=current.version if current else None, detail=detail)

    app.include_router(admin)
