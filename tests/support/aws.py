"""AWS stand-ins on moto's HTTP server: an SNS topic with an SQS inbox subscribed to it, clients."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import boto3

REGION = "us-east-1"


def aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Topic:
    """An SNS topic on moto with an SQS queue subscribed to it."""

    endpoint: str
    arn: str
    queue_url: str
    sqs: Any

    def messages(self, expected: int, max_polls: int = 10) -> list[dict[str, Any]]:
        """SNS envelopes delivered to the queue; polls until `expected` arrived (bounded)."""
        out: list[dict[str, Any]] = []
        for _ in range(max_polls):
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0 if out else 1
            )
            for m in resp.get("Messages", []):
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            if len(out) >= expected and not resp.get("Messages"):
                break
        return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
