"""The FastAPI app factory: settings, the lifespan that owns every resource, the routes and handlers.

Why the lifespan owns everything: the model manager, decision log and background tasks (pointer poll,
decision upload) start before the first request and stop cleanly after the last one, and nothing
lives in module globals, so tests can run several apps in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from factory_core.store import ObjectStore, open_store
from inference_server.api.docs import install_docs
from inference_server.api.errors import (
    install_handlers,
)
from inference_server.api.routes import install_routes
from inference_server.core.metrics import Metrics
from inference_server.core.settings import Settings
from inference_server.serving.decision_log import DecisionLog
from inference_server.serving.models import ModelManager

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
        docs_url=None,  # served from the package by install_docs (no CDN)
        redoc_url=None,
        # our own Prometheus metrics cover the API; FastAPI's OpenTelemetry hooks cost ~40 us a request
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_handlers(app, settings.max_body_bytes)
    install_routes(app, settings, metrics)
    install_docs(app)
    return app
