"""FastAPI app: POST /v1/recommendations, health, metrics, admin; resources owned by the lifespan.

Why the lifespan owns everything: the model manager, decision log and background tasks (pointer poll,
decision upload) start before the first request and stop cleanly after the last one, and nothing
lives in module globals, so tests can run several apps in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from edge_collector.store import ObjectNotFoundError, ObjectStore, StoreError, open_store
from inference_server.auth import require_admin_key, require_api_key
from inference_server.decision_log import DecisionLog
from inference_server.errors import ApiError, FastJSONResponse, error_response, install_handlers, request_id
from inference_server.features import LOT_FEATURES
from inference_server.lifecycle import ModelManager
from inference_server.metrics import Metrics
from inference_server.recommender import NoFeasibleSetting
from inference_server.registry import ModelVerificationError
from inference_server.schemas import (
    AdminResult,
    ErrorBody,
    FallbackError,
    PromoteRequest,
    RecommendationRequest,
    RecommendationResponse,
    ValidationErrorBody,
)
from inference_server.settings import Settings

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
            if request.headers.get("content-type") == "application/json":
                raw = await request.body()  # a streamed body over the limit raises 413 here (BodyLimit)
                try:
                    body = validate_json(raw)
                except ValidationError:
                    pass  # the generic handler below reports it: the same 422 body, field and rule
                else:
                    return await endpoint(body=body, request=request)
            return await generic(request)

        return handler


async def _poll_loop(manager: ModelManager, interval: float) -> None:
    while True:
        try:
            await asyncio.to_thread(manager.sync_once)
        except Exception:  # the loop must survive anything a poll can throw
            log.exception("serving-pointer poll failed")
        await asyncio.sleep(interval)


def create_app(settings: Settings, store: ObjectStore | None = None) -> FastAPI:
    """A fully wired app; ``store`` overrides settings.store_url (tests inject a local store)."""
    metrics = Metrics()
    store = store if store is not None else build_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = ModelManager(settings.cache_dir, metrics, store)
        decisions = DecisionLog(
            settings.spool_dir,
            settings.instance_id,
            metrics,
            batch_records=settings.decision_batch_records,
            flush_interval_s=settings.decision_flush_interval_s,
            segment_max_bytes=settings.segment_max_bytes,
            segment_max_age_s=settings.segment_max_age_s,
        )
        await asyncio.to_thread(manager.load_cached)
        app.state.manager = manager
        app.state.decisions = decisions
        tasks = []
        upload_stop = asyncio.Event()
        upload_task: asyncio.Task[None] | None = None
        if store is not None:
            tasks.append(
                asyncio.create_task(_poll_loop(manager, settings.poll_interval_s), name="pointer-poll")
            )
            uploader = decisions.uploader(
                store,
                retry_initial_s=min(0.5, settings.ship_interval_s),
                retry_max_s=settings.ship_interval_s,
            )
            upload_task = asyncio.create_task(uploader.run(upload_stop), name="decision-upload")
        decisions.start()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(decisions.close)
            if upload_task is not None:
                if not await decisions.drain_uploads(SHUTDOWN_SHIP_TIMEOUT_S):
                    log.warning("decisions left in the spool at shutdown; shipped on next start")
                upload_stop.set()
                await upload_task

    app = FastAPI(
        title="Factory inference API",
        version="1.0.0",
        summary="Recommends machine settings per lot; the operator decides whenever it cannot.",
        lifespan=lifespan,
        # our own Prometheus metrics cover the API; FastAPI's OpenTelemetry hooks cost ~40 us a request
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_handlers(app, settings.max_body_bytes)
    # label lookups take a lock and hash the labels: resolve the children once
    stats = metrics.request_stats

    state = app.state  # the lifespan sets manager and decisions on it
    lot_values = operator.attrgetter(*LOT_FEATURES)  # pydantic floats, in the model's input order

    async def recommend(body: RecommendationRequest, request: Request) -> Any:
        started = time.perf_counter()
        rid = request_id(request)
        model = state.manager.current  # read once: a swap cannot change it under us
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
        except NoFeasibleSetting as exc:
            return fallback("model_unavailable", str(exc))
        elapsed = time.perf_counter() - started
        if elapsed > settings.deadline_s:
            return fallback("deadline_exceeded", f"recommendation took {elapsed * 1e3:.1f} ms > deadline")
        latency_ms = elapsed * 1e3
        stats.observe(elapsed)
        stats.count("ok")
        record.update(status=200, outcome="ok", parameters=rec.parameters,
                      predicted_quality=rec.predicted_quality, predicted_fault_risk=rec.predicted_fault_risk,
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

    @app.post("/admin/reload", response_model=AdminResult, dependencies=[Depends(require_admin_key)],
              responses={401: {"model": ErrorBody}})  # fmt: skip
    async def reload(request: Request) -> AdminResult:
        """Poll the serving pointer now (instead of waiting for the interval)."""
        manager: ModelManager = request.app.state.manager
        detail = await asyncio.to_thread(manager.sync_once)
        current = manager.current
        return AdminResult(status="ok", model_version=current.version if current else None, detail=detail)

    @app.post("/admin/promote", response_model=AdminResult, dependencies=[Depends(require_admin_key)],
              responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}})  # fmt: skip
    async def promote(body: PromoteRequest, request: Request) -> AdminResult:
        """Verify a published version, point serving at it, and swap to it."""
        manager: ModelManager = request.app.state.manager
        try:
            await asyncio.to_thread(manager.promote, body.version)
        except ObjectNotFoundError:
            raise ApiError(404, "not_found", f"version {body.version} is not in the registry") from None
        except ModelVerificationError as exc:
            raise ApiError(409, "model_refused", str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, "store_unavailable", str(exc)) from None
        current = manager.current
        return AdminResult(
            status="ok", model_version=current.version if current else None, detail=f"promoted {body.version}"
        )

    return app
