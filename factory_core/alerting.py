"""Alert notifier: SNS (and optionally e-mail via SES or SMTP), rate-limited per dedup key.

Why here: the edge collector, the Dagster sensors and the inference server must page a human when data is at risk (gaps, a growing
backlog, failed runs, a silent line) without ever letting a broken alert path take the caller down.
`Notifier.notify` therefore never raises: a failed delivery is logged and counted, and the next call
for the same dedup key is allowed through again (only *delivered* alerts start the quiet window).

Core dependencies only (boto3, prometheus-client, stdlib): the collector image has no dagster.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

ENV_PREFIX = "EDGE_ALERT_"
SNS_SUBJECT_MAX = 100  # SNS rejects longer subjects
SNS_ATTRIBUTE_MAX = 256
DEFAULT_MIN_INTERVAL_S = 900.0


class Severity(enum.IntEnum):
    """Ordered so an escalation (warning -> critical) is never swallowed by the rate limit."""

    INFO = 10
    WARNING = 20
    CRITICAL = 30

    @classmethod
    def parse(cls, value: Severity | str) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(f"severity {value!r}: must be one of info, warning, critical") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Alert:
    """One message; `dedup_key` identifies the condition (e.g. "gap:L1:temp_zone1"), not the event."""

    subject: str
    body: str
    severity: Severity
    dedup_key: str
    source: str
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def sns_subject(self) -> str:
        """Printable ASCII, single line, <= 100 chars (SNS's rules for Subject)."""
        text = f"[{self.severity.label.upper()}] {self.subject}"
        text = "".join(c if 32 <= ord(c) < 127 else " " for c in text)
        text = " ".join(text.split())
        return text if len(text) <= SNS_SUBJECT_MAX else text[: SNS_SUBJECT_MAX - 3] + "..."

    def render_text(self) -> str:
        """Human-readable body for e-mail and SNS e-mail/SMS subscribers."""
        lines = [
            self.body.rstrip(),
            "",
            f"severity: {self.severity.label}",
            f"source: {self.source}",
            f"dedup_key: {self.dedup_key}",
        ]
        lines += [f"{k}: {v}" for k, v in sorted(self.details.items())]
        return "\n".join(lines) + "\n"


def build_alert(
    subject: str,
    body: str,
    *,
    severity: Severity | str = Severity.WARNING,
    dedup_key: str | None = None,
    source: str = "edge-collector",
    details: Mapping[str, object] | None = None,
) -> Alert:
    """Normalise inputs; the dedup key defaults to the subject so repeats of one message coalesce."""
    if not subject or not subject.strip():
        raise ValueError("subject: must not be empty")
    return Alert(
        subject=subject.strip(),
        body=body,
        severity=Severity.parse(severity),
        dedup_key=(dedup_key or subject).strip(),
        source=source,
        details={str(k): str(v) for k, v in (details or {}).items()},
    )


class AlertSink(Protocol):
    """A delivery channel; `send` raises on failure (the Notifier catches and counts)."""

    name: str

    def send(self, alert: Alert) -> None: ...


def _boto_client(service: str, region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url or None, config=cfg)


class SnsSink:
    """Publish to an SNS topic; severity and dedup key travel as message attributes for filtering."""

    name = "sns"

    def __init__(
        self,
        topic_arn: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        timeout_s: float = 10.0,
        client: Any = None,
    ) -> None:
        if not topic_arn.startswith("arn:"):
            raise ValueError(f"sns topic_arn {topic_arn!r}: must be an ARN (arn:aws:sns:...)")
        self.topic_arn = topic_arn
        self._client = client or _boto_client("sns", region, endpoint_url, timeout_s)

    def send(self, alert: Alert) -> None:
        attrs = {
            "severity": alert.severity.label,
            "dedup_key": alert.dedup_key[:SNS_ATTRIBUTE_MAX],
            "source": alert.source[:SNS_ATTRIBUTE_MAX],
        }
        self._client.publish(
            TopicArn=self.topic_arn,
            Subject=alert.sns_subject,
            Message=alert.render_text(),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attrs.items() if v},
        )


class SesSink:
    """E-mail through Amazon SES (no SMTP credentials on the box: the instance role sends)."""

    name = "ses"

    def __init__(
        self,
        sender: str,
        recipients: Sequence[str],
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        timeout_s: float = 10.0,
        client: Any = None,
    ) -> None:
        if not sender or not recipients:
            raise ValueError("ses: sender and at least one recipient are required")
        self.sender, self.recipients = sender, list(recipients)
        self._client = client or _boto_client("ses", region, endpoint_url, timeout_s)

    def send(self, alert: Alert) -> None:
        self._client.send_email(
            Source=self.sender,
            Destination={"ToAddresses": self.recipients},
            Message={
                "Subject": {"Data": alert.sns_subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": alert.render_text(), "Charset": "UTF-8"}},
            },
        )


class SmtpSink:
    """E-mail through a site relay (factories often have one and no route to SES)."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        if not host or not sender or not recipients:
            raise ValueError("smtp: host, sender and at least one recipient are required")
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)
        self.username, self.password, self.starttls, self.timeout_s = username, password, starttls, timeout_s

    def send(self, alert: Alert) -> None:
        msg = EmailMessage()
        msg["Subject"] = alert.sns_subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["X-Alert-Dedup-Key"] = alert.dedup_key
        msg["X-Alert-Severity"] = alert.severity.label
        msg.set_content(alert.render_text())
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


class RateLimiter:
    """At most one delivered alert per dedup key per window, unless the severity escalates."""

    def __init__(self, min_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s: must be >= 0, got {min_interval_s}")
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last: dict[str, tuple[float, Severity]] = {}
        self._lock = threading.Lock()

    def allowed(self, key: str, severity: Severity) -> bool:
        with self._lock:
            prev = self._last.get(key)
            if prev is None:
                return True
            at, prev_severity = prev
            return severity > prev_severity or self._clock() - at >= self.min_interval_s

    def record(self, key: str, severity: Severity) -> None:
        with self._lock:
            self._last[key] = (self._clock(), severity)


@dataclass
class NotifierStats:
    """In-process counts (also exported to Prometheus when a registry is given)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0


class Notifier:
    """Fan an alert out to every sink; never raises into the caller."""

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        source: str = "edge-collector",
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sinks = list(sinks)
        self.source = source
        self.limiter = RateLimiter(min_interval_s, clock)
        self.stats = NotifierStats()
        self._lock = threading.Lock()
        self._metrics: tuple[Counter, Counter, Counter] | None = None
        if registry is not None:
            self._metrics = (
                Counter("edge_alerts_sent", "Alerts delivered", ["sink"], registry=registry),
                Counter("edge_alerts_failed", "Alert deliveries that failed", ["sink"], registry=registry),
                Counter("edge_alerts_suppressed", "Alerts dropped by the rate limit", registry=registry),
            )

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def notify(
        self,
        subject: str,
        body: str = "",
        *,
        severity: Severity | str = Severity.WARNING,
        dedup_key: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> bool:
        """Build and send; True when at least one sink delivered. Never raises."""
        return self.build_and_send(
            lambda: build_alert(
                subject, body, severity=severity, dedup_key=dedup_key, source=self.source, details=details
            ),
            str(subject)[:200],
        )

    def build_and_send(self, build: Callable[[], Alert], what: str) -> bool:
        """Build an alert (a caller's own kind, e.g. the collector's gap alert) and send it. Never raises:
        a build that fails is logged under ``what`` and counted."""
        try:
            alert = build()
        except Exception:
            log.exception("alert not built", extra={"fields": {"alert": what}})
            self._count_failure("build")
            return False
        return self.send(alert)

    async def anotify(self, subject: str, body: str = "", **kwargs: Any) -> bool:
        """`notify` off the event loop: a slow SNS/SMTP endpoint must not stall polling."""
        return await asyncio.to_thread(self.notify, subject, body, **kwargs)

    def send(self, alert: Alert) -> bool:
        """Deliver a built alert to every sink (rate-limited by its dedup key). Never raises."""
        try:
            if not self.limiter.allowed(alert.dedup_key, alert.severity):
                with self._lock:
                    self.stats.suppressed += 1
                if self._metrics:
                    self._metrics[2].inc()
                log.info("alert suppressed by rate limit", extra={"fields": {"dedup_key": alert.dedup_key}})
                return False
            delivered = False
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception as exc:
                    log.warning(
                        "alert delivery failed",
                        extra={
                            "fields": {
                                "sink": sink.name,
                                "dedup_key": alert.dedup_key,
                                "error": f"{type(exc).__name__}: {exc}"[:500],
                            }
                        },
                    )
                    self._count_failure(sink.name)
                    continue
                delivered = True
                with self._lock:
                    self.stats.sent += 1
                if self._metrics:
                    self._metrics[0].labels(sink=sink.name).inc()
            if delivered:
                self.limiter.record(alert.dedup_key, alert.severity)
            elif not self.sinks:
                log.warning(
                    "alert not delivered: no alert sink configured",
                    extra={"fields": {"subject": alert.subject, "dedup_key": alert.dedup_key}},
                )
            return delivered
        except Exception:  # defensive: a bug here must not reach the collector loop
            log.exception("alert path failed")
            self._count_failure("internal")
            return False

    def _count_failure(self, sink: str) -> None:
        with self._lock:
            self.stats.failed += 1
        if self._metrics:
            self._metrics[1].labels(sink=sink).inc()


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go. Env var = prefix + upper-cased field name (EDGE_ALERT_SNS_TOPIC_ARN, ...)."""

    sns_topic_arn: str = ""
    sns_endpoint_url: str = ""  # moto / VPC endpoint; empty = AWS default (or AWS_ENDPOINT_URL_SNS)
    region: str = "us-east-1"
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    email_via: str = "ses"  # "ses" | "smtp"
    ses_endpoint_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> AlertSettings:
        """Read and validate; errors name the env var."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, default in cls.__dataclass_fields__.items():
            raw = env.get(prefix + name.upper())
            if raw is None or raw == "":
                continue
            var = prefix + name.upper()
            kind = type(default.default) if default.default is not None else str
            if name == "email_to":
                values[name] = tuple(a.strip() for a in raw.split(",") if a.strip())
            elif kind is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(f"{var}: expected true/false, got {raw!r}")
                values[name] = raw.lower() in ("1", "true", "yes")
            elif kind in (int, float):
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{var}: expected {kind.__name__}, got {raw!r}") from None
            else:
                values[name] = raw
        settings = cls(**values)
        settings.validate(prefix)
        return settings

    def validate(self, prefix: str = ENV_PREFIX) -> None:
        if self.sns_topic_arn and not self.sns_topic_arn.startswith("arn:"):
            raise ValueError(f"{prefix}SNS_TOPIC_ARN: must be an SNS topic ARN, got {self.sns_topic_arn!r}")
        if self.email_via not in ("ses", "smtp"):
            raise ValueError(f"{prefix}EMAIL_VIA: must be 'ses' or 'smtp', got {self.email_via!r}")
        if self.email_to and not self.email_from:
            raise ValueError(f"{prefix}EMAIL_FROM: required when {prefix}EMAIL_TO is set")
        if self.email_to and self.email_via == "smtp" and not self.smtp_host:
            raise ValueError(f"{prefix}SMTP_HOST: required when {prefix}EMAIL_VIA=smtp")
        if self.min_interval_s < 0:
            raise ValueError(f"{prefix}MIN_INTERVAL_S: must be >= 0")
        if self.timeout_s <= 0:
            raise ValueError(f"{prefix}TIMEOUT_S: must be > 0")


def build_sinks(settings: AlertSettings) -> list[AlertSink]:
    """The sinks the settings ask for (none = alerts are logged as undeliverable)."""
    sinks: list[AlertSink] = []
    if settings.sns_topic_arn:
        sinks.append(
            SnsSink(
                settings.sns_topic_arn,
                region=settings.region,
                endpoint_url=settings.sns_endpoint_url or None,
                timeout_s=settings.timeout_s,
            )
        )
    if settings.email_to:
        if settings.email_via == "ses":
            sinks.append(
                SesSink(
                    settings.email_from,
                    settings.email_to,
                    region=settings.region,
                    endpoint_url=settings.ses_endpoint_url or None,
                    timeout_s=settings.timeout_s,
                )
            )
        else:
            sinks.append(
                SmtpSink(
                    settings.smtp_host,
                    settings.smtp_port,
                    settings.email_from,
                    settings.email_to,
                    username=settings.smtp_username or None,
                    password=settings.smtp_password or None,
                    starttls=settings.smtp_starttls,
                    timeout_s=settings.timeout_s,
                )
            )
    return sinks


def notifier_from_settings(
    settings: AlertSettings,
    *,
    source: str = "edge-collector",
    registry: CollectorRegistry | None = None,
) -> Notifier:
    return Notifier(
        build_sinks(settings), min_interval_s=settings.min_interval_s, source=source, registry=registry
    )


def notifier_from_env(
    env: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    source: str | None = None,
    registry: CollectorRegistry | None = None,
) -> Notifier:
    """The collector's entry point: `EDGE_ALERT_*` settings -> a ready Notifier."""
    settings = AlertSettings.from_env(env, prefix)
    return notifier_from_settings(
        settings, source=source or f"edge-collector@{socket.gethostname()}", registry=registry
    )
