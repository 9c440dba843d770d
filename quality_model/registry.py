"""Model artefact format and registry: save / load / verify, publish, promote and roll back.

Artefact = XGBoost native UBJ for each booster (never pickle) + metadata.json (version, training window,
feature schema, search state incl. support set, metrics, smoke predictions, SHA-256 of every file).
Layout in the object store: models/versions/{version}/{quality.ubj,fault.ubj,metadata.json} and the
serving pointer models/serving.json. metadata.json is written last, so a version without it is an
incomplete upload and is never listed. Anything that fails verification is refused: a model is only
served after checksum + schema + smoke predictions pass.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from factory_core.layout import POINTER_KEY, VERSIONS_PREFIX, check_version, is_version, version_key
from factory_core.store import ObjectNotFoundError, ObjectStore
from quality_model.features import FEATURES, PARAM_BOUNDS, PARAM_FEATURES, SCHEMA_VERSION
from quality_model.search.recommender import NoFeasibleSetting, Recommender

QUALITY_FILE = "quality.ubj"
FAULT_FILE = "fault.ubj"
META_FILE = "metadata.json"
MODEL_FILES = (QUALITY_FILE, FAULT_FILE)
FORMAT = "factory-quality-model"
SMOKE_TOLERANCE = 1e-4
log = logging.getLogger(__name__)
POINTER_HISTORY = 20


class ModelVerificationError(Exception):
    """The artefact is incomplete, tampered with, of another schema, or predicts differently."""


class PointerError(ValueError):
    """The serving pointer exists but cannot be used; the message names its key and what is wrong.

    Why its own type: a corrupt pointer must never block the repairs (``promote`` overwrites it,
    ``rollback --version`` too), and an operator needs the key and the reason, not a decode error."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready to serve (immutable; swapped as one reference)."""

    version: str
    version_number: int
    metadata_sha256: str
    recommender: Recommender
    metadata: dict[str, Any]

    @functools.cached_property
    def lines(self) -> frozenset[str]:
        """The production lines the model was trained for (metadata ``lines``): the only ones it serves."""
        lines = self.metadata.get("lines")
        return frozenset(v for v in lines if isinstance(v, str)) if isinstance(lines, list) else frozenset()


@dataclass(frozen=True)
class PublishResult:
    version: str
    version_number: int
    promoted: bool
    reason: str
    metrics: dict[str, Any]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------ serialize / verify


def serialize(model: Any, version_number: int) -> dict[str, bytes]:
    """Files of a TrainedModel as bytes; the version is v{number}-{digest of the two boosters}."""
    quality = bytes(model.quality.save_raw(raw_format="ubj"))
    fault = bytes(model.fault.save_raw(raw_format="ubj"))
    version = f"v{version_number:05d}-{sha256(quality + fault)[:12]}"
    meta = {
        **model.metadata,
        "version": version,
        "version_number": version_number,
        "files": {QUALITY_FILE: sha256(quality), FAULT_FILE: sha256(fault)},
    }
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return {QUALITY_FILE: quality, FAULT_FILE: fault, META_FILE: meta_bytes}


def _load_booster(name: str, data: bytes) -> xgb.Booster:
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as exc:
        raise ModelVerificationError(f"{name}: not a loadable XGBoost UBJ model ({exc})") from None
    if booster.num_features() != len(FEATURES):
        raise ModelVerificationError(
            f"{name}: expects {booster.num_features()} features, schema has {len(FEATURES)}"
        )
    if booster.feature_names is not None and tuple(booster.feature_names) != FEATURES:
        raise ModelVerificationError(
            f"{name}: feature names {booster.feature_names} != schema {list(FEATURES)}"
        )
    return booster


def verify(files: dict[str, bytes]) -> LoadedModel:
    """Checksums, schema and smoke predictions; returns a servable model or raises ModelVerificationError."""
    if META_FILE not in files:
        raise ModelVerificationError(f"{META_FILE}: missing")
    try:
        meta = json.loads(files[META_FILE])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelVerificationError(f"{META_FILE}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelVerificationError(f"{META_FILE}: format is not {FORMAT!r}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ModelVerificationError(
            f"{META_FILE}: schema_version {meta.get('schema_version')!r} != {SCHEMA_VERSION}"
        )
    if tuple(meta.get("feature_schema", {}).get("features", ())) != FEATURES:
        raise ModelVerificationError(f"{META_FILE}: feature_schema.features differs from {list(FEATURES)}")
    listed = meta.get("files")
    if not isinstance(listed, dict) or set(listed) != set(MODEL_FILES):
        raise ModelVerificationError(f"{META_FILE}: files must list exactly {list(MODEL_FILES)}")
    for name in MODEL_FILES:
        if name not in files:
            raise ModelVerificationError(f"{name}: missing")
        if sha256(files[name]) != listed[name]:
            raise ModelVerificationError(f"{name}: SHA-256 mismatch (tampered or corrupt)")
    try:
        version = check_version(meta.get("version"))
    except ValueError as exc:
        raise ModelVerificationError(f"{META_FILE}: {exc}") from None
    number = meta.get("version_number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ModelVerificationError(f"{META_FILE}: version_number must be an int >= 1, got {number!r}")
    quality = _load_booster(QUALITY_FILE, files[QUALITY_FILE])
    fault = _load_booster(FAULT_FILE, files[FAULT_FILE])
    _smoke(meta, quality, fault)
    try:
        rec = Recommender(quality, fault, meta)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelVerificationError(f"{META_FILE}: search section unusable ({exc!r})") from None
    _smoke_recommend(meta, rec)
    return LoadedModel(version, number, sha256(files[META_FILE]), rec, meta)


def _smoke(meta: dict[str, Any], quality: xgb.Booster, fault: xgb.Booster) -> None:
    smoke = meta.get("smoke") or {}
    try:
        x = np.asarray(smoke["inputs"], dtype=np.float32)
        expected = {"quality": np.asarray(smoke["quality"]), "fault": np.asarray(smoke["fault"])}
    except (KeyError, TypeError, ValueError):
        raise ModelVerificationError(f"{META_FILE}: smoke section missing or malformed") from None
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) == 0:
        raise ModelVerificationError(f"{META_FILE}: smoke inputs must be n x {len(FEATURES)}")
    for name, booster in (("quality", quality), ("fault", fault)):
        got = booster.inplace_predict(x, validate_features=False)
        if got.shape != expected[name].shape or not np.allclose(
            got, expected[name], atol=SMOKE_TOLERANCE, rtol=0
        ):
            raise ModelVerificationError(
                f"smoke predictions of the {name} model differ from the recorded ones"
            )


def _smoke_recommend(meta: dict[str, Any], rec: Recommender) -> None:
    lot = tuple(float(v) for v in meta["smoke"]["inputs"][0][:4])
    try:
        out = rec.recommend(lot)  # type: ignore[arg-type]
    except NoFeasibleSetting:
        return  # an edge-of-history smoke lot may be infeasible; that is a valid answer
    for name in PARAM_FEATURES:
        value = out.parameters[name]
        lo, hi = PARAM_BOUNDS[name]
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ModelVerificationError(
                f"smoke recommendation {name}={value} outside safety range [{lo}, {hi}]"
            )


# ------------------------------------------------------------------------------------------ local dirs


def write_dir(files: dict[str, bytes], path: Path) -> None:
    """Write an artefact into a directory atomically (temp dir + fsync + rename); metadata last."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    for name in [*sorted(n for n in files if n != META_FILE), META_FILE]:
        with open(tmp / name, "wb") as fh:
            fh.write(files[name])
            fh.flush()
            os.fsync(fh.fileno())
    if path.exists():
        _remove_dir(path)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_dir(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def read_dir(path: Path) -> dict[str, bytes]:
    """The artefact files found in a directory (verification decides whether they are complete)."""
    path = Path(path)
    return {name: (path / name).read_bytes() for name in (META_FILE, *MODEL_FILES) if (path / name).is_file()}


def load_dir(path: Path) -> LoadedModel:
    """Read + verify a model directory (`inference-server verify <dir>`)."""
    return verify(read_dir(path))


# ---------------------------------------------------------------------------------------- object store


def list_versions(store: ObjectStore) -> list[str]:
    """Complete versions (metadata.json present), oldest first."""
    out = []
    for key in store.list(VERSIONS_PREFIX):
        parts = key[len(VERSIONS_PREFIX) :].split("/")
        if len(parts) == 2 and parts[1] == META_FILE and is_version(parts[0]):
            out.append(parts[0])
    return sorted(out)


def fetch_version(store: ObjectStore, version: str) -> dict[str, bytes]:
    """All files of one version from the store (unverified)."""
    check_version(version)
    files = {META_FILE: store.get(version_key(version, META_FILE))}
    for name in MODEL_FILES:
        try:
            files[name] = store.get(version_key(version, name))
        except ObjectNotFoundError:
            continue  # verify() names the missing file
    return files


def read_pointer(store: ObjectStore) -> dict[str, Any] | None:
    """The serving pointer, or None when nothing was ever promoted; PointerError when unusable."""
    try:
        raw = store.get(POINTER_KEY)
    except ObjectNotFoundError:
        return None
    try:
        pointer = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PointerError(f"{POINTER_KEY}: not valid JSON ({exc})") from None
    if not isinstance(pointer, dict):
        raise PointerError(f"{POINTER_KEY}: not a JSON object (found {type(pointer).__name__})")
    version = pointer.get("version")
    if not isinstance(version, str) or not is_version(version):
        raise PointerError(f"{POINTER_KEY}: 'version' is {version!r}, not a version like v00003-0123456789ab")
    history = pointer.get("history", [])
    if not isinstance(history, list) or not all(isinstance(v, str) and is_version(v) for v in history):
        raise PointerError(f"{POINTER_KEY}: 'history' is not a list of versions")
    return pointer


def set_pointer(store: ObjectStore, model: LoadedModel, reason: str) -> dict[str, Any]:
    """Point serving at a verified model; the previous targets are kept for rollback.

    An unreadable pointer never blocks this (it is how the operator repairs it): it is replaced, with
    an empty history, and ``replaced`` in the result says what was wrong with it."""
    replaced: str | None = None
    try:
        current = read_pointer(store)
    except PointerError as exc:
        current, replaced = None, str(exc)
        log.warning("replacing an unreadable serving pointer: %s", exc)
    history: list[str] = []
    if current is not None:
        history = [current["version"], *current.get("history", [])]
        history = [v for v in history if v != model.version][:POINTER_HISTORY]
    pointer = {
        "version": model.version,
        "version_number": model.version_number,
        "metadata_sha256": model.metadata_sha256,
        "updated_at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "history": history,
    }
    store.put(POINTER_KEY, json.dumps(pointer, sort_keys=True).encode())
    return {**pointer, "replaced": replaced} if replaced else pointer


def promote(store: ObjectStore, version: str, reason: str = "manual promote") -> dict[str, Any]:
    """Verify ``version`` from the store, then make it the serving target (whatever the pointer holds)."""
    return set_pointer(store, verify(fetch_version(store, version)), reason)


def rollback(store: ObjectStore, version: str | None = None) -> dict[str, Any]:
    """Serve ``version`` (default: the previous serving target) after verifying it."""
    if version is None:
        try:
            current = read_pointer(store)
        except PointerError as exc:
            raise PointerError(
                f"{exc}; no previous version can be read from it: name one with --version"
            ) from None
        history = (current or {}).get("history", [])
        if not history:
            raise ValueError("rollback: the serving pointer has no previous version to roll back to")
        version = history[0]
    return set_pointer(store, verify(fetch_version(store, version)), f"rollback to {version}")


def publish(
    store: ObjectStore,
    model: Any,
    promote_if_not_worse: bool = True,
    tolerance: float = 0.02,
    judge: Callable[[LoadedModel], Any] | None = None,
) -> PublishResult:
    """Upload a TrainedModel as the next version and decide whether it serves.

    With ``judge`` (the platform's gate, quality_model.retraining.judge bound to the training history):
    promoted when the judge's verdict on the decisions of the candidate vs the serving model says so.
    Without it (no history at hand, e.g. a model trained elsewhere): promoted if its held-out quality RMSE
    is not worse than the serving model's on the SAME rows (by more than ``tolerance``, relative).

    Idempotent: re-publishing identical boosters reuses the existing version (same content digest).
    """
    from quality_model.training import quality_errors

    versions = list_versions(store)
    probe = serialize(model, 1)
    digest = json.loads(probe[META_FILE])["version"].split("-", 1)[1]
    existing = [v for v in versions if v.endswith(digest)]
    if existing:
        version = existing[0]
        loaded = verify(fetch_version(store, version))
    else:
        number = 1 + max((int(v[1:6]) for v in versions), default=0)
        files = serialize(model, number)
        loaded = verify(files)  # never upload what we would refuse to serve
        for name in (*MODEL_FILES, META_FILE):  # metadata last: its presence marks a complete version
            store.put(version_key(loaded.version, name), files[name])
    new_err = (
        quality_errors(loaded.recommender, model.holdout)
        if len(model.holdout)
        else {"quality_rmse": math.nan}
    )
    metrics: dict[str, Any] = {"candidate": new_err}
    if not promote_if_not_worse:
        return PublishResult(loaded.version, loaded.version_number, False, "published only", metrics)
    try:
        pointer = read_pointer(store)
    except PointerError as exc:  # nothing verifiable is serving: a verified model is the repair
        reason = f"promoted: {exc}"
        set_pointer(store, loaded, reason)
        return PublishResult(loaded.version, loaded.version_number, True, reason, metrics)
    if pointer is None:
        set_pointer(store, loaded, "first model")
        return PublishResult(loaded.version, loaded.version_number, True, "first model", metrics)
    if pointer["version"] == loaded.version:
        return PublishResult(loaded.version, loaded.version_number, False, "already serving", metrics)
    try:
        serving = verify(fetch_version(store, pointer["version"]))
    except (ModelVerificationError, ObjectNotFoundError) as exc:
        reason = f"promoted: serving model {pointer['version']} is unusable ({exc})"
        set_pointer(store, loaded, reason)
        return PublishResult(loaded.version, loaded.version_number, True, reason, metrics)
    if judge is not None:
        verdict = judge(serving)
        metrics["gate"] = verdict.judged
        if verdict.promoted:
            set_pointer(store, loaded, verdict.reason)
        return PublishResult(loaded.version, loaded.version_number, verdict.promoted, verdict.reason, metrics)
    old_err = (
        quality_errors(serving.recommender, model.holdout)
        if len(model.holdout)
        else {"quality_rmse": math.nan}
    )
    metrics["serving"] = {"version": serving.version, **old_err}
    new_rmse, old_rmse = new_err["quality_rmse"], old_err["quality_rmse"]
    if not math.isfinite(new_rmse) or (math.isfinite(old_rmse) and new_rmse > old_rmse * (1.0 + tolerance)):
        reason = f"not promoted: held-out quality RMSE {new_rmse:.3f} worse than serving {old_rmse:.3f}"
        return PublishResult(loaded.version, loaded.version_number, False, reason, metrics)
    reason = f"promoted: held-out quality RMSE {new_rmse:.3f} vs serving {old_rmse:.3f}"
    set_pointer(store, loaded, reason)
    return PublishResult(loaded.version, loaded.version_number, True, reason, metrics)
