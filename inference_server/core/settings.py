"""Server settings from INFERENCE_* environment variables plus an optional JSON file, validated at start.

Why strict: a typo in a deployment must stop the server with a message naming the setting, not
surface as a 500 at 3 a.m. API keys come from the environment only (never from a file in the repo).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inference_server.core.limits import ConnectionLimits

ENV_PREFIX = "INFERENCE_"
SECRET_FIELDS = ("api_keys", "admin_keys")


class SettingsError(ValueError):
    """Invalid configuration; the message names the INFERENCE_* setting and the rule."""


class Settings(BaseModel):
    """Everything the server reads at start (see docs/inference.md for the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: tuple[str, ...] = Field(min_length=1, repr=False)
    admin_keys: tuple[str, ...] = Field(min_length=1, repr=False)
    store_url: str | None = None  # s3://bucket/prefix or a directory; None = no cloud at all
    store_endpoint_url: str | None = None
    store_connect_timeout_s: float = Field(2.0, gt=0, le=60)
    cache_dir: Path = Path("var/inference/cache")
    spool_dir: Path = Path("var/inference/decisions")
    poll_interval_s: float = Field(30.0, gt=0, le=86_400)
    deadline_s: float = Field(1.0, gt=0, le=60)
    max_body_bytes: int = Field(4096, ge=256, le=1_048_576)
    # connection limits (inference_server/core/limits.py): enforced by the server process itself
    max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576)  # request line + headers
    max_headers: int = Field(64, ge=8, le=1000)
    max_url_bytes: int = Field(2048, ge=64, le=65_536)
    idle_timeout_s: float = Field(5.0, gt=0, le=3600)  # no request in progress (keep-alive, new socket)
    header_timeout_s: float = Field(5.0, gt=0, le=300)  # first byte of a request -> end of its headers
    body_timeout_s: float = Field(5.0, gt=0, le=300)  # end of headers -> end of body
    max_connections: int = Field(512, ge=2, le=100_000)
    decision_batch_records: int = Field(512, ge=1, le=100_000)
    decision_flush_interval_s: float = Field(1.0, gt=0, le=10)  # one object per line per second at most
    segment_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    segment_max_age_s: float = Field(60.0, gt=0)
    ship_interval_s: float = Field(10.0, gt=0)
    instance_id: str = Field(
        default_factory=lambda: socket.gethostname() or "inference", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
    )
    log_level: str = "INFO"

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if len(key) < 16:
                raise ValueError("every key must be at least 16 characters")
        return keys

    @field_validator("log_level")
    @classmethod
    def _level(cls, level: str) -> str:
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level.upper()


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The protocol-level limits of ``settings`` (``inference-server serve`` hands them to uvicorn)."""
    return ConnectionLimits(**{f: getattr(settings, f) for f in ConnectionLimits.__dataclass_fields__})


def _split_keys(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from INFERENCE_SETTINGS_FILE (JSON, optional), then INFERENCE_* env, then overrides."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    file = env.get(f"{ENV_PREFIX}SETTINGS_FILE")
    if file:
        try:
            raw.update(json.loads(Path(file).read_text()))
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"{ENV_PREFIX}SETTINGS_FILE: cannot read JSON settings from {file!r}: {exc}"
            ) from None
        leaked = [k for k in SECRET_FIELDS if k in raw]
        if leaked:
            raise SettingsError(
                f"{ENV_PREFIX}SETTINGS_FILE: {leaked} must come from the environment "
                f"({', '.join(ENV_PREFIX + k.upper() for k in leaked)}), never from a file"
            )
    for name in Settings.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None:
            raw[name] = _split_keys(value) if name in SECRET_FIELDS else value
    raw.update(overrides)
    try:
        return Settings(**raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
