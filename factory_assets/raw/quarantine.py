"""Quarantine of corrupt raw/gap objects: copied under quarantine/ with a reason file.

Why: a corrupt object must not block the partitions around it, and nothing already accepted may be lost,
so the bytes are preserved next to a JSON reason (deterministic content: re-quarantining is a no-op).
"""

from __future__ import annotations

import json

from factory_core.layout import quarantine_key, quarantine_reason_key
from factory_core.store import ObjectStore


def quarantine(store: ObjectStore, key: str, data: bytes, reason: str) -> str:
    """Copy `data` to quarantine/{key} and write quarantine/{key}.reason.json; returns the copy's key."""
    qkey = quarantine_key(key)
    if not store.exists(qkey):
        store.put(qkey, data)
    doc = json.dumps({"key": key, "reason": reason, "bytes": len(data)}, sort_keys=True).encode()
    store.put(quarantine_reason_key(key), doc)
    return qkey
