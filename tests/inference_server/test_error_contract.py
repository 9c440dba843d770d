"""One error contract for every 4xx, lines served explicitly, repairable serving pointer, offline docs.

Each test here failed before the fix it names (issue 14, defects 3-9): a real uvicorn on 127.0.0.1,
bodies sent as raw bytes so nothing in the client normalizes them.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from factory_core import layout
from factory_core.outbox.spool import Spool
from factory_core.store import LocalDirStore
from inference_server.core.settings import load_settings
from inference_server.main import create_app
from inference_server.serving.decision_log import decode_segment
from inference_server.serving.models import ModelCache
from quality_model import registry
from tests.support.inference import (
    ADMIN_KEY,
    API_KEY,
    auth,
    client,
    lot_body,
    serve_in_thread,
    trained,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def files_v1() -> dict[str, bytes]:
    return registry.serialize(trained(7.0), 1)


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    base = {"api_keys": [API_KEY], "admin_keys": [ADMIN_KEY], "cache_dir": tmp_path / "cache",
            "spool_dir": tmp_path / "spool", "poll_interval_s": 3600, "segment_max_age_s": 0.2}  # fmt: skip
    return load_settings({}, **{**base, **overrides})


def _put_version(store: Any, files: dict[str, bytes]) -> str:
    version = json.loads(files[registry.META_FILE])["version"]
    for name in (*registry.MODEL_FILES, registry.META_FILE):
        store.put(layout.version_key(version, name), files[name])
    return version


@pytest.fixture
def served(tmp_path: Path, files_v1: dict[str, bytes]) -> Iterator[httpx.Client]:
    ModelCache(tmp_path / "cache").store(files_v1, registry.verify(files_v1))
    with serve_in_thread(create_app(_settings(tmp_path))) as url, client(url) as c:
        yield c


def _assert_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Every 4xx: documented status and code, a request id in body AND header (the same one)."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and body["fallback"] == "operator", body
    assert body["request_id"] and r.headers["x-request-id"] == body["request_id"], (body, r.headers)
    return body


# ------------------------------------------------------------------------------ 3: routing by line


def test_a_line_the_model_was_not_trained_for_is_refused_naming_it_and_the_lines_served(
    served: httpx.Client, tmp_path: Path
) -> None:
    r = served.post("/v1/recommendations", json=lot_body(line="L999"), headers=auth())
    body = _assert_error(r, 422, "validation_error")
    [err] = body["errors"]
    assert err["field"] == "line_id" and err["rule"] == "line_not_served"
    assert "L999" in err["message"] and "L1" in err["message"], err
    assert served.post("/v1/recommendations", json=lot_body(line="L1"), headers=auth()).status_code == 200

    def spooled_lines() -> set[str]:
        spool = Spool(tmp_path / "spool")
        return {r["line_id"] for e in spool.entries() for r in decode_segment(spool.read(e)[1])}

    assert wait_until(lambda: "L1" in spooled_lines())
    assert spooled_lines() == {"L1"}  # no decision (no decisions/line=L999/ prefix) for an unserved line


# ------------------------------------------------------------------------------ 6, 8: auth and types


@pytest.mark.parametrize("raw", [b'{"version":', b"[]", b'{"version": "nope"}', b"\xff\xfe"])
def test_admin_promote_checks_the_key_before_reading_the_body(served: httpx.Client, raw: bytes) -> None:
    for headers in ({}, auth(API_KEY)):
        r = served.post("/admin/promote", content=raw, headers={**headers, **JSON})
        _assert_error(r, 401, "unauthorized")


def test_every_401_carries_the_request_id_in_body_and_header(served: httpx.Client) -> None:
    for path in ("/v1/recommendations", "/admin/reload", "/admin/promote"):
        body = _assert_error(served.post(path, json={}), 401, "unauthorized")
        assert "Authorization" in body["detail"], body


def test_a_422_body_carries_the_request_id(served: httpx.Client) -> None:
    r = served.post("/v1/recommendations", content=b'{"line_id": 7}', headers={**auth(), **JSON})
    _assert_error(r, 422, "validation_error")


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_json_sent_as_another_content_type_is_415_naming_the_expected_type(
    served: httpx.Client, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for path, key, body in (("/v1/recommendations", API_KEY, lot_body()), ("/admin/promote", ADMIN_KEY, {})):
        r = served.post(path, content=json.dumps(body).encode(), headers={**auth(key), **headers})
        detail = _assert_error(r, 415, "unsupported_media_type")["detail"]
        assert "Content-Type" in detail and "application/json" in detail, detail


# ------------------------------------------------------------------------------ 7: undecodable JSON

_LOT = b'"lot":{"moisture":6,"hardness":65,"density":1.3,"impurity":0.5}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"line_id":"L\xff1",' + _LOT + b"}",  # invalid UTF-8
        '{"line_id":"Lé",'.encode("latin-1") + _LOT + b"}",  # latin-1
        b"[" * 2000 + b"]" * 2000,  # 2,000 nesting levels in 4 KiB
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_undecodable_json_is_422_json_invalid_on_both_parsers(
    served: httpx.Client, raw: bytes, content_type: str
) -> None:
    r = served.post("/v1/recommendations", content=raw, headers={**auth(), "content-type": content_type})
    [err] = _assert_error(r, 422, "validation_error")["errors"]
    assert (err["field"], err["rule"]) == ("body", "json_invalid"), err
    r = served.post("/admin/promote", content=raw, headers={**auth(ADMIN_KEY), "content-type": content_type})
    [err] = _assert_error(r, 422, "validation_error")["errors"]
    assert (err["field"], err["rule"]) == ("body", "json_invalid"), err


# ------------------------------------------------------------------------------ 5: disconnects


def test_a_client_disconnecting_mid_body_is_logged_once_at_info_with_the_request_id(
    served: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = served.base_url.host, served.base_url.port
    with caplog.at_level(logging.DEBUG):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(
                b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + API_KEY.encode() + b'\r\nContent-Length: 100\r\n\r\n{"line'
            )
            assert served.get("/health/live").status_code == 200  # the partial body has been read
        assert wait_until(lambda: any("disconnect" in r.getMessage() for r in caplog.records), 10)
        assert served.get("/health/live").status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    [record] = [r for r in caplog.records if "disconnect" in r.getMessage()]
    assert record.levelno == logging.INFO and record.fields["request_id"]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ 9: docs offline


def test_docs_and_redoc_load_every_asset_from_the_server_itself(served: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        html = served.get(page).text
        assert "cdn" not in html.lower() and "https://" not in html, html
        assets = [part.split('"')[0] for part in html.split('src="')[1:] + html.split('href="')[1:]]
        local = [a for a in assets if a.startswith("/")]
        assert local, html
        for asset in local:
            r = served.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset


# ------------------------------------------------------------------------------ 4: corrupt pointer


def _corrupt_pointer(store: LocalDirStore) -> None:
    store.put(layout.POINTER_KEY, b'{"version": "v00001-0123')


def test_a_corrupt_serving_pointer_is_named_and_overwritten_by_admin_promote(
    tmp_path: Path, files_v1: dict[str, bytes]
) -> None:
    store = LocalDirStore(tmp_path / "store")
    version = _put_version(store, files_v1)
    _corrupt_pointer(store)
    app = create_app(_settings(tmp_path, store_url=str(tmp_path / "store")))
    with serve_in_thread(app) as url, client(url) as c:
        r = c.post("/admin/reload", headers=auth(ADMIN_KEY))
        assert r.status_code == 200 and layout.POINTER_KEY in r.json()["detail"], r.text
        r = c.post("/admin/promote", json={"version": version}, headers=auth(ADMIN_KEY))
        assert r.status_code == 200 and r.json()["model_version"] == version, r.text
    assert registry.read_pointer(store)["version"] == version


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "inference_server.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_promote_and_rollback_repair_a_corrupt_pointer_and_name_it_when_they_cannot(
    tmp_path: Path, files_v1: dict[str, bytes]
) -> None:
    store = LocalDirStore(tmp_path / "store")
    version = _put_version(store, files_v1)
    _corrupt_pointer(store)
    url = str(tmp_path / "store")
    failed = _cli("rollback", "--store-url", url)  # no previous version can be read from it
    assert failed.returncode == 1 and layout.POINTER_KEY in failed.stderr and "--version" in failed.stderr
    assert "JSON" in failed.stderr, failed.stderr
    done = _cli("rollback", "--version", version, "--store-url", url)
    assert done.returncode == 0, done.stderr
    _corrupt_pointer(store)
    done = _cli("promote", "--version", version, "--store-url", url)
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == version, done.stderr
    assert "replaced an unreadable" in done.stderr
    assert registry.read_pointer(store)["version"] == version


@pytest.mark.parametrize(
    "raw, what", [(b"[]", "not a JSON object"), (b'{"version": "v1"}', "version"), (b"\xff", "JSON")]
)
def test_read_pointer_names_the_key_and_what_is_wrong(tmp_path: Path, raw: bytes, what: str) -> None:
    store = LocalDirStore(tmp_path / "store")
    store.put(layout.POINTER_KEY, raw)
    with pytest.raises(registry.PointerError) as info:
        registry.read_pointer(store)
    assert layout.POINTER_KEY in str(info.value) and what in str(info.value)
