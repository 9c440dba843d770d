"""Which model is served: local cache at start, serving-pointer polling, verified hot swap.

Why: the server must start and serve with the cloud unreachable (last good model from the local cache,
checksum-verified), pick up promotions without a restart, and never serve a model that failed
verification. A swap is load -> verify (checksums, schema, smoke predictions) -> cache -> ONE
reference assignment; requests hold the reference they started with, so none fails during a swap,
and a model that fails verification leaves the old one serving.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from factory_core.store import ObjectStore, StoreError
from inference_server.core.metrics import Metrics
from quality_model import registry
from quality_model.registry import LoadedModel, ModelVerificationError

log = logging.getLogger(__name__)
CURRENT_FILE = "current.json"


class ModelCache:
    """cache_dir/versions/{version}/... + cache_dir/current.json naming the last good version."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.versions.mkdir(parents=True, exist_ok=True)

    def store(self, files: dict[str, bytes], model: LoadedModel) -> None:
        registry.write_dir(files, self.versions / model.version)
        tmp = self.root / f".{CURRENT_FILE}.tmp"
        tmp.write_bytes(
            json.dumps({"version": model.version, "metadata_sha256": model.metadata_sha256}).encode()
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / CURRENT_FILE)

    def candidates(self) -> list[str]:
        """Cached versions to try at start: current first, then the others newest first."""
        found = sorted(
            (p.name for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith(".")),
            reverse=True,
        )
        try:
            current = json.loads((self.root / CURRENT_FILE).read_bytes())["version"]
        except (OSError, ValueError, KeyError, TypeError):
            current = None
        return ([current] if current in found else []) + [v for v in found if v != current]

    def load(self, version: str) -> tuple[LoadedModel, dict[str, bytes]]:
        files = registry.read_dir(self.versions / version)
        return registry.verify(files), files


class ModelManager:
    """Holds the served model; all loads go through verification; swaps are one assignment."""

    def __init__(self, cache_dir: Path, metrics: Metrics, store: ObjectStore | None) -> None:
        self.cache = ModelCache(cache_dir)
        self.metrics = metrics
        self.store = store
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one loader at a time (poll task vs admin reload)
        self._refused: dict[str, str | None] = {}  # version -> metadata sha that failed verification

    def _swap(self, model: LoadedModel, source: str) -> None:
        old = self.current
        self.current = model  # the atomic swap: requests read this attribute exactly once
        self.metrics.model_version.set(model.version_number)
        self.metrics.swaps.inc()
        log.info(
            "serving model %s", model.version,
            extra={"fields": {"model_version": model.version, "source": source, "previous": old.version if old else None}},
        )  # fmt: skip

    def load_cached(self) -> bool:
        """At start: the last good cached model (verified); a tampered cache entry is skipped."""
        for version in self.cache.candidates():
            try:
                model, _ = self.cache.load(version)
            except (ModelVerificationError, OSError) as exc:
                self.metrics.swap_failures.labels("cache_verify").inc()
                log.error("cached model %s refused: %s", version, exc)
                continue
            self._swap(model, "cache")
            return True
        return False

    def sync_once(self) -> str:
        """Poll the serving pointer; pull, verify and swap in a newer target. Returns what happened."""
        if self.store is None:
            return "no store configured"
        with self._lock:
            try:
                pointer = registry.read_pointer(self.store)
            except (StoreError, ValueError, KeyError, TypeError) as exc:
                self.metrics.poll_errors.inc()
                self.last_error = f"serving pointer unreadable: {exc}"
                log.warning("%s", self.last_error)
                return self.last_error
            if pointer is None:
                return "no serving pointer yet"
            version, sha = pointer["version"], pointer.get("metadata_sha256")
            if self.current is not None and self.current.version == version:
                return f"already serving {version}"
            if version in self._refused and self._refused[version] == sha:
                return f"{version} was refused before"
            return self._pull(version, sha)

    def _pull(self, version: str, sha: str | None) -> str:
        try:
            files = registry.fetch_version(self.store, version)  # type: ignore[arg-type]
        except (StoreError, ValueError) as exc:
            self.metrics.poll_errors.inc()
            self.last_error = f"cannot fetch {version}: {exc}"
            log.warning("%s", self.last_error)
            return self.last_error
        try:
            if sha is not None and registry.sha256(files.get(registry.META_FILE, b"")) != sha:
                raise ModelVerificationError("metadata.json SHA-256 differs from the serving pointer's")
            model = registry.verify(files)
        except ModelVerificationError as exc:
            self._refused[version] = sha
            self.metrics.swap_failures.labels("verify").inc()
            self.last_error = f"model {version} refused: {exc}"
            log.error("%s; keeping %s", self.last_error, self.current.version if self.current else "no model")
            return self.last_error
        try:
            self.cache.store(files, model)
        except OSError as exc:  # serving matters more than caching
            log.error("could not cache model %s: %s", version, exc)
        self._swap(model, "store")
        self.last_error = None
        return f"swapped to {version}"

    def promote(self, version: str) -> dict[str, Any]:
        """Admin: verify ``version`` in the store, move the pointer, then swap to it."""
        if self.store is None:
            raise StoreError("no object store configured (INFERENCE_STORE_URL)")
        pointer = registry.promote(self.store, version, reason="admin promote")
        self.sync_once()
        return pointer
