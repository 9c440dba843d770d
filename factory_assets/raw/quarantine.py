"""Quarantine of corrupt raw/gap objects: copied under quarantine/ with a reason file.

Why: a corrupt object must not block the partitions around it, and nothing already accepted may be lost,
so the bytes are preserved next to a JSON reason (deterministic content: re-quarantining is a no-op).
"""

from __future__ import annotations

import json

from edge_collector.store import ObjectStore

QUARANTINE_PREFIX = "quarantine/"


class CorruptObjectError(Exception):
    """A raw or gap object failed validation; the message names the object and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt object {key!r}: {reason} (quarantined under {QUARANTINE_PREFIX}{key})")
        self.key = key
        self.reason = reason


def quarantine_key(key: str) -> str:
    return f"{QUARANTINE_PREFIX}{key}"


def quarantine(store: ObjectStore, key: str, data: bytes, reason: str) -> str:
    """Copy `data` to quarantine/{key} and write quarantine/{key}.reason.json; returns the copy's key."""
    qkey = quarantine_key(key)
    if not store.exists(qkey):
        store.put(qkey, data)
    doc = json.dumps({"key": key, "reason": reason, "bytes": len(data)}, sort_keys=True).encode()
    store.put(f"{qkey}.reason.json", doc)
    return qkey
