"""Helpers for tests and benchmarks: a real uvicorn server on a loopback socket, cached small models.

Why in the package: several test modules and the benchmark need the same pieces, and the
conftest is shared with other teams; nothing here is used by the production server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn

from factory_sim.demo.services import WaitTimeout, wait_for

API_KEY = "test-api-key-0123456789"
ADMIN_KEY = "test-admin-key-0123456789"


@functools.lru_cache(maxsize=4)
def trained(days: float = 7.0, start_day: float = 0.0, seed: int = 42) -> Any:
    """A TrainedModel on ``days`` of simulated productions (cached per process: tests share it)."""
    from factory_sim.productions import productions_frame
    from quality_model import training as trainer

    return trainer.train(productions_frame(days, seed=seed, start_day=start_day), seed=seed)


def serving_lines(model: Any, *lines: str) -> Any:
    """The same boosters declared as trained for ``lines`` (the server refuses any other line)."""
    return dataclasses.replace(model, metadata={**model.metadata, "lines": sorted(lines)})


def bound_socket() -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 with an ephemeral port (no pick-then-bind race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_in_thread(app: Any, timeout_s: float = 20.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a thread; yields the base URL, stops it on exit."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    # Stop waiting as soon as the thread died too (a failing lifespan startup ends server.run).
    wait_until(lambda: server.started or not thread.is_alive(), timeout_s, interval_s=0.01)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()


def wait_until(predicate: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or timeout (tests wait on observable state, not on sleeps).

    Returns a bool for ``assert wait_until(...)``; one last look after the deadline, so a slow
    final interval does not turn a condition that holds into a failure."""
    try:
        wait_for("predicate", predicate, timeout_s, interval_s)
    except WaitTimeout:
        return bool(predicate())
    return True


def lot_body(moisture: float = 6.0, hardness: float = 65.0, density: float = 1.3, impurity: float = 0.6,
             line: str = "L1") -> dict[str, Any]:  # fmt: skip
    return {
        "line_id": line,
        "lot": {"moisture": moisture, "hardness": hardness, "density": density, "impurity": impurity},
    }


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10.0)
