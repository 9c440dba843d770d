"""Collector settings: TOML file, then ``EDGE_*`` environment variables (env wins), validated at start.

Why: a daemon that starts with a bad setting and fails an hour later loses data; every rule is
checked up front and the error names the setting (file key and env var).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "EDGE_"
CHECKSUM_MODES = ("when_required", "when_supported")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True)
class CollectorConfig:
    """All collector settings. Field name == TOML key == ``EDGE_`` + upper-cased env var."""

    sensor_host: str = "127.0.0.1"
    sensor_port: int = 5020
    spool_dir: str = "var/edge-spool"
    # "s3://bucket/prefix" or a local directory (embedded default: same key layout on disk).
    store_url: str = "var/objects"  # the embedded default store, shared with Dagster
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_checksum: str = "when_supported"
    s3_max_attempts: int = 2
    poll_interval_s: float = 60.0
    request_timeout_s: float = 10.0
    max_samples: int = 6000  # per channel per READ: bounds one response (25 ch) to ~2.4 MB
    group_size: int = 25
    max_concurrent_polls: int = 4
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    upload_concurrency: int = 4
    upload_retry_initial_s: float = 0.5
    upload_retry_max_s: float = 30.0
    spool_max_bytes: int = 2 * 1024**3
    spool_warn_ratio: float = 0.8
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108  # 0 = ephemeral, -1 = disabled
    log_level: str = "INFO"
    shutdown_timeout_s: float = 10.0
    # Alerts (destinations: EDGE_ALERT_SNS_TOPIC_ARN etc., read by edge_collector.alerting).
    alert_backlog_age_s: float = 900.0  # page when the oldest un-uploaded spool file is older
    alert_check_interval_s: float = 15.0  # how often backlog age and disk budget are checked

    @property
    def spool_path(self) -> Path:
        return Path(self.spool_dir)


_FIELDS = {f.name: f for f in fields(CollectorConfig)}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _label(field: str) -> str:
    return f"{field} ({env_name(field)})"


def _coerce(field: str, raw: Any) -> Any:
    kind = _FIELDS[field].type
    try:
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{_label(field)}: expected {kind}, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"{_label(field)}: expected a string, got {raw!r}")
    return raw


def _positive(cfg: CollectorConfig, *names: str) -> None:
    for name in names:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{_label(name)}: must be > 0, got {getattr(cfg, name)!r}")


def validate(cfg: CollectorConfig) -> CollectorConfig:
    """Check every rule; raise ConfigError naming the first offending setting."""
    _positive(
        cfg,
        "sensor_port",
        "poll_interval_s",
        "request_timeout_s",
        "max_samples",
        "group_size",
        "max_concurrent_polls",
        "reconnect_initial_s",
        "reconnect_max_s",
        "upload_concurrency",
        "upload_retry_initial_s",
        "upload_retry_max_s",
        "spool_max_bytes",
        "s3_max_attempts",
        "shutdown_timeout_s",
        "alert_backlog_age_s",
        "alert_check_interval_s",
    )
    if not cfg.sensor_host:
        raise ConfigError(f"{_label('sensor_host')}: must not be empty")
    if cfg.sensor_port > 65535:
        raise ConfigError(f"{_label('sensor_port')}: must be <= 65535, got {cfg.sensor_port}")
    if not -1 <= cfg.metrics_port <= 65535:
        raise ConfigError(f"{_label('metrics_port')}: must be -1 (off), 0 (ephemeral) or a port")
    if cfg.reconnect_max_s < cfg.reconnect_initial_s:
        raise ConfigError(f"{_label('reconnect_max_s')}: must be >= reconnect_initial_s")
    if cfg.upload_retry_max_s < cfg.upload_retry_initial_s:
        raise ConfigError(f"{_label('upload_retry_max_s')}: must be >= upload_retry_initial_s")
    if not 0.0 < cfg.spool_warn_ratio < 1.0:
        raise ConfigError(f"{_label('spool_warn_ratio')}: must be in (0, 1), got {cfg.spool_warn_ratio}")
    if cfg.s3_checksum not in CHECKSUM_MODES:
        raise ConfigError(
            f"{_label('s3_checksum')}: must be one of {CHECKSUM_MODES}, got {cfg.s3_checksum!r}"
        )
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"{_label('log_level')}: must be one of {LOG_LEVELS}, got {cfg.log_level!r}")
    if not cfg.spool_dir:
        raise ConfigError(f"{_label('spool_dir')}: must not be empty")
    if not cfg.store_url:
        raise ConfigError(f"{_label('store_url')}: must not be empty")
    if cfg.store_url.startswith("s3://") and len(cfg.store_url) <= len("s3://"):
        raise ConfigError(f"{_label('store_url')}: s3:// URL needs a bucket name")
    if cfg.s3_endpoint_url and not cfg.s3_endpoint_url.startswith(("http://", "https://")):
        raise ConfigError(f"{_label('s3_endpoint_url')}: must start with http:// or https://")
    return cfg


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> CollectorConfig:
    """Build a validated config from an optional TOML file, then env vars, then keyword overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        section = data.get("collector", data)
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [collector] must be a table")
        for key, raw in section.items():
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
    env = os.environ if env is None else env
    for name in _FIELDS:
        raw = env.get(env_name(name))
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for key, raw in overrides.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw)
    return validate(CollectorConfig(**values))


def as_dict(cfg: CollectorConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
