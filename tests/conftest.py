"""Shared fixtures: one moto S3 server over real HTTP on 127.0.0.1 for the whole session.

Other helpers' tests reuse `moto_server` (endpoint URL), `s3_bucket` (a fresh bucket per test) and
`s3_client`; credentials are fake and set here so boto3 never looks for real ones.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import Topic, aws_client

_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_bucket_counter = itertools.count()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Endpoint URL of a ThreadedMotoServer listening on an ephemeral loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    saved = {k: os.environ.get(k) for k in _FAKE_AWS_ENV}
    os.environ.update(_FAKE_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_s3_client(endpoint_url: str) -> Any:
    """A plain boto3 S3 client for the moto endpoint (tests use it to create buckets and inspect)."""
    import boto3
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required", response_checksum_validation="when_required"
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture(scope="session")
def s3_client(moto_server: str) -> Any:
    """boto3 S3 client pointed at the moto server."""
    return make_s3_client(moto_server)


@pytest.fixture
def s3_bucket(moto_server: str, s3_client: Any) -> str:
    """Name of a freshly created, empty bucket (unique per test, so tests never see each other's data)."""
    name = f"test-{os.getpid()}-{next(_bucket_counter)}"
    s3_client.create_bucket(Bucket=name)
    return name


_topic_counter = iter(range(10**6))


@pytest.fixture
def topic(moto_server: str) -> Topic:
    n = next(_topic_counter)
    sns, sqs = aws_client("sns", moto_server), aws_client("sqs", moto_server)
    arn = sns.create_topic(Name=f"factory-alerts-{n}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-inbox-{n}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return Topic(moto_server, arn, queue_url, sqs)
