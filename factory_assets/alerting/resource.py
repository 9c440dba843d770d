"""`AlertNotifierResource`: the Dagster face of edge_collector.alerting.Notifier.

Why a resource: sensors get delivery settings from the deployment (env vars via `alerting_resources`),
and tests point the same sensors at moto's SNS. The Notifier is cached per settings so the per-dedup-key
rate limit survives across sensor evaluations inside one code-server process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from dagster import ConfigurableResource
from pydantic import Field

from factory_core.alerting import (
    DEFAULT_MIN_INTERVAL_S,
    AlertSettings,
    Notifier,
    Severity,
    notifier_from_settings,
)

ENV_PREFIX = "FACTORY_ALERT_"
WEBSERVER_URL_ENV = "FACTORY_ALERT_WEBSERVER_URL"  # link target in run alerts


class AlertNotifierResource(ConfigurableResource):
    """Where Dagster alerts go (SNS topic and/or e-mail) and how often one condition may repeat."""

    sns_topic_arn: str = Field(default="", description="SNS topic ARN; empty = no SNS delivery")
    sns_endpoint_url: str = Field(default="", description="Custom SNS endpoint (moto, VPC endpoint)")
    region: str = Field(default="us-east-1", description="AWS region of the topic / SES")
    email_to: list[str] = Field(default_factory=list, description="E-mail recipients (optional)")
    email_from: str = Field(default="", description="E-mail sender address")
    email_via: str = Field(default="ses", description="'ses' or 'smtp'")
    smtp_host: str = Field(default="", description="SMTP relay host when email_via=smtp")
    smtp_port: int = Field(default=587, description="SMTP relay port")
    smtp_username: str = Field(default="", description="SMTP user (optional)")
    smtp_password: str = Field(default="", description="SMTP password (optional; from a secret)")
    min_interval_s: float = Field(
        default=DEFAULT_MIN_INTERVAL_S, description="Quiet window per dedup key after a delivered alert"
    )
    webserver_url: str = Field(default="", description="Dagster UI base URL, linked from run alerts")
    source: str = Field(default="dagster", description="Names the sender in every alert")

    def settings(self) -> AlertSettings:
        s = AlertSettings(
            sns_topic_arn=self.sns_topic_arn,
            sns_endpoint_url=self.sns_endpoint_url,
            region=self.region,
            email_to=tuple(self.email_to),
            email_from=self.email_from,
            email_via=self.email_via,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_username=self.smtp_username,
            smtp_password=self.smtp_password,
            min_interval_s=self.min_interval_s,
        )
        s.validate(ENV_PREFIX)
        return s

    def get_notifier(self) -> Notifier:
        return _cached_notifier(self.settings(), self.source)

    def notify(
        self,
        subject: str,
        body: str = "",
        *,
        severity: Severity | str = Severity.WARNING,
        dedup_key: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> bool:
        """Deliver (rate-limited); never raises, even on bad settings (logged and counted instead)."""
        try:
            notifier = self.get_notifier()
        except Exception:
            import logging

            logging.getLogger(__name__).exception("alert notifier misconfigured; alert dropped: %s", subject)
            return False
        return notifier.notify(subject, body, severity=severity, dedup_key=dedup_key, details=details)

    def run_url(self, run_id: str) -> str:
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}" if self.webserver_url else ""


@lru_cache(maxsize=8)
def _cached_notifier(settings: AlertSettings, source: str) -> Notifier:
    return notifier_from_settings(settings, source=source)


def alerting_resources(env: Mapping[str, str] | None = None) -> dict[str, AlertNotifierResource]:
    """`{"alert_notifier": ...}` from FACTORY_ALERT_* env vars, validated now (errors name the var)."""
    env = os.environ if env is None else env
    s = AlertSettings.from_env(env, ENV_PREFIX)
    return {
        "alert_notifier": AlertNotifierResource(
            sns_topic_arn=s.sns_topic_arn,
            sns_endpoint_url=s.sns_endpoint_url,
            region=s.region,
            email_to=list(s.email_to),
            email_from=s.email_from,
            email_via=s.email_via,
            smtp_host=s.smtp_host,
            smtp_port=s.smtp_port,
            smtp_username=s.smtp_username,
            smtp_password=s.smtp_password,
            min_interval_s=s.min_interval_s,
            webserver_url=env.get(WEBSERVER_URL_ENV, ""),
        )
    }
