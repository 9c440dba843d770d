"""A real HTTP recommendation endpoint that speaks the inference API contract, for tests and the demo.

The model server does not exist yet; the control loop and the evaluation still need something on the
other end of a TCP socket that behaves like it, including the ways it can fail (503 fallbacks, slow
answers, unsafe parameters, garbage bodies, wrong keys). Strategies are switchable while it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np

from factory_sim import physics

StrategyKind = Literal[
    "oracle",  # p*(lot) plus optional noise, clipped to the safety ranges
    "unavailable",  # 503 {"error": "model_unavailable", "fallback": "operator"}
    "deadline_exceeded",  # 503 {"error": "deadline_exceeded", "fallback": "operator"}
    "slow",  # sleep delay_s, then answer like "oracle"
    "trickle",  # answer like "oracle" but send the body one byte every delay_s (beats per-read timeouts)
    "bad_params",  # a well-formed 200 whose temperature is above its safety range
    "garbage",  # 200 with a body that is not JSON
    "server_error",  # 500 with a plain-text body
]
STRATEGIES: tuple[str, ...] = StrategyKind.__args__  # type: ignore[attr-defined]
MAX_BODY = 64 * 1024
PATH = "/v1/recommendations"


@dataclass(frozen=True)
class Strategy:
    """How the endpoint answers. `noise` is a fraction of each parameter's safety-range width (std)."""

    kind: StrategyKind = "oracle"
    noise: float = 0.0
    delay_s: float = 0.0
    seed: int = 0
    model_version: str = "testing-oracle-v1"
    model_version_number: int = 1


@dataclass
class _State:
    api_key: str
    strategy: Strategy
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1


def _validation_errors(body: Any) -> list[dict[str, str]]:
    """Check a request body against the contract; every error names the field and the rule."""
    if not isinstance(body, dict):
        return [{"field": "body", "rule": "type", "message": "body must be a JSON object"}]
    errors: list[dict[str, str]] = []
    line_id = body.get("line_id")
    if not isinstance(line_id, str) or not line_id:
        errors.append(
            {"field": "line_id", "rule": "required", "message": "line_id must be a non-empty string"}
        )
    lot_id = body.get("lot_id")
    if lot_id is not None and not isinstance(lot_id, str):
        errors.append({"field": "lot_id", "rule": "type", "message": "lot_id must be a string when given"})
    lot = body.get("lot")
    if not isinstance(lot, dict):
        errors.append({"field": "lot", "rule": "required", "message": "lot must be an object"})
        return errors
    for name in physics.QUALITY_FIGURES:
        value = lot.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(
                {"field": f"lot.{name}", "rule": "required", "message": f"lot.{name} must be a number"}
            )
        elif not math.isfinite(value):
            errors.append({"field": f"lot.{name}", "rule": "finite", "message": f"lot.{name} must be finite"})
    return errors


def _noisy_optimum(lot: physics.Lot, strategy: Strategy) -> dict[str, float]:
    """p*(lot) with deterministic per-lot noise (same lot, same answer), clipped to the safety ranges."""
    best = physics.optimum(lot)
    digest = hashlib.blake2b(
        repr((strategy.seed, lot.moisture, lot.hardness, lot.density, lot.impurity)).encode(), digest_size=8
    ).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    params: dict[str, float] = {}
    for name in physics.PARAMETERS:
        lo, hi = physics.SAFETY_RANGES[name]
        value = float(getattr(best, name)) + float(rng.normal(0.0, strategy.noise * (hi - lo)))
        params[name] = min(max(value, lo), hi)
    return params


class _Handler(BaseHTTPRequestHandler):
    server_version = "factory-testing-endpoint/1"
    protocol_version = "HTTP/1.1"  # keep-alive, like the real server behind uvicorn
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall
    state: _State  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr lines; counts are kept in the state instead."""

    def _send(
        self, status: int, payload: Any, *, raw: bytes | None = None, ctype: str = "application/json"
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.state.count(status)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok", "strategy": self.state.strategy.kind})
        else:
            self._send(404, {"error": "not_found", "detail": self.path})

    def do_POST(self) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        if self.path != PATH:
            self._send(404, {"error": "not_found", "detail": self.path})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(
                400, {"error": "bad_request", "fallback": "operator", "detail": "invalid Content-Length"}
            )
            return
        if length > MAX_BODY:
            self.close_connection = True
            self._send(
                413, {"error": "payload_too_large", "fallback": "operator", "detail": f"max {MAX_BODY} bytes"}
            )
            return
        raw = self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        expected = f"Bearer {self.state.api_key}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            self._send(
                401, {"error": "unauthorized", "fallback": "operator", "detail": "missing or wrong API key"}
            )
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
            errors = [{"field": "body", "rule": "json", "message": "body is not valid JSON"}]
        else:
            errors = _validation_errors(body)
        if errors:
            self._send(422, {"error": "validation_error", "fallback": "operator", "errors": errors})
            return
        self._answer(body, request_id, started)

    def _answer(self, body: dict[str, Any], request_id: str, started: float) -> None:
        strategy = self.state.strategy
        if strategy.kind == "unavailable":
            self._send(503, self._fallback("model_unavailable", "no model loaded", request_id))
            return
        if strategy.kind == "deadline_exceeded":
            self._send(503, self._fallback("deadline_exceeded", "prediction took too long", request_id))
            return
        if strategy.kind == "server_error":
            self._send(500, None, raw=b"Internal Server Error", ctype="text/plain")
            return
        if strategy.kind == "garbage":
            self._send(200, None, raw=b"<html>not json{", ctype="application/json")
            return
        if strategy.kind == "slow" and self.state.stopping.wait(strategy.delay_s):
            return  # server is stopping: drop the request instead of holding shutdown
        lot_in = body["lot"]
        lot = physics.Lot(
            lot_id=str(body.get("lot_id") or ""), **{n: float(lot_in[n]) for n in physics.QUALITY_FIGURES}
        )
        params = _noisy_optimum(lot, strategy)
        if strategy.kind == "bad_params":
            params["temperature"] = physics.SAFETY_RANGES["temperature"][1] + 50.0
        chosen = physics.clip_to_safety(physics.Params(**params))
        quality = physics.max_quality(lot) * math.exp(-0.5 * physics.penalty(lot, chosen))
        p_oc, p_ot = physics.fault_probabilities(lot, chosen)
        answer = {
            "request_id": request_id,
            "line_id": body["line_id"],
            "model_version": strategy.model_version,
            "model_version_number": strategy.model_version_number,
            "parameters": params,
            "predicted_quality": quality,
            "predicted_fault_risk": 1.0 - (1.0 - p_oc) * (1.0 - p_ot),
            "latency_ms": (time.perf_counter() - started) * 1000.0,
        }
        if strategy.kind == "trickle":
            self._trickle(json.dumps(answer).encode(), strategy.delay_s)
        else:
            self._send(200, answer)

    def _trickle(self, data: bytes, delay_s: float) -> None:
        """Headers at once, then the body byte by byte: each read is quick, the whole answer is not."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.state.count(200)
        try:
            for i in range(len(data)):
                if self.state.stopping.wait(delay_s):
                    break
                self.wfile.write(data[i : i + 1])
        except OSError:
            pass  # the client gave up (its deadline): expected
        self.close_connection = True

    @staticmethod
    def _fallback(error: str, detail: str, request_id: str) -> dict[str, str]:
        return {"error": error, "fallback": "operator", "detail": detail, "request_id": request_id}


class TestingEndpoint:
    """In-process HTTP server on 127.0.0.1 (port 0 = ephemeral). Use as a context manager."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self, api_key: str, strategy: Strategy | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        if not api_key:
            raise ValueError("api_key: must be a non-empty string")
        self._state = _State(api_key=api_key, strategy=strategy or Strategy())
        handler = type("BoundHandler", (_Handler,), {"state": self._state})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def strategy(self) -> Strategy:
        return self._state.strategy

    @strategy.setter
    def strategy(self, value: Strategy) -> None:
        self._state.strategy = value

    def set(self, **changes: Any) -> None:
        """Switch strategy fields while running (e.g. `set(kind="unavailable")`)."""
        self._state.strategy = replace(self._state.strategy, **changes)

    @property
    def requests(self) -> int:
        return self._state.requests

    @property
    def by_status(self) -> dict[int, int]:
        with self._state.lock:
            return dict(self._state.by_status)

    def start(self) -> TestingEndpoint:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="testing-endpoint",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> TestingEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the testing endpoint in the foreground (manual runs and the demo)."""
    import os

    parser = argparse.ArgumentParser(
        prog="python -m tests.support.endpoint",
        description="Stand-in recommendation endpoint speaking the inference API contract.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key-env", default="FACTORY_API_KEY", help="env var holding the API key")
    parser.add_argument("--strategy", choices=STRATEGIES, default="oracle")
    parser.add_argument("--noise", type=float, default=0.0, help="std as a fraction of each safety range")
    parser.add_argument("--delay-s", type=float, default=0.0, help="sleep before answering (strategy slow)")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env, "")
    if not api_key:
        parser.error(f"{args.api_key_env}: environment variable is empty or unset (the API key)")
    strategy = Strategy(kind=args.strategy, noise=args.noise, delay_s=args.delay_s)
    endpoint = TestingEndpoint(api_key, strategy, host=args.host, port=args.port).start()
    print(json.dumps({"url": endpoint.url, "strategy": args.strategy}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
