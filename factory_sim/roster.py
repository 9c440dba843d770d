"""`factory-sim roster`: the simulated factory's crew roster, written to the bucket as its master data.

Why the simulator writes it: the crew is the factory's master data (who code 1 on the set_by channel is),
kept by the factory beside its sensors, never sent over the sensor protocol. The simulated factory's crew
is factory_sim.craftsmen.CRAFTSMEN; this writes it to layout.CREW_KEY in the format of factory_core.crew,
where Dagster's `master/crew` asset loads it into the warehouse. Rewriting it is idempotent (same bytes).
"""

from __future__ import annotations

import argparse
import json

from factory_core.crew import CrewMember, encode_roster
from factory_core.layout import CREW_KEY
from factory_core.store import ObjectStore, StoreError, open_store
from factory_sim.craftsmen import CRAFTSMEN


def crew_roster() -> list[CrewMember]:
    """The simulated factory's crew as its roster lists it (code, name, seniority)."""
    return [CrewMember(c.code, c.name, c.skill) for c in CRAFTSMEN]


def write_roster(store: ObjectStore) -> str:
    """Put the roster at layout.CREW_KEY; returns the key."""
    store.put(CREW_KEY, encode_roster(crew_roster()))
    return CREW_KEY


def cli(argv: list[str]) -> int:
    """Entry point of `factory-sim roster`."""
    parser = argparse.ArgumentParser(
        prog="factory-sim roster", description=f"write the crew roster (master data) to {CREW_KEY} in a store"
    )
    parser.add_argument("--store", required=True, help="object store: a directory or s3://bucket[/prefix]")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (else AWS_ENDPOINT_URL_S3)")
    args = parser.parse_args(argv)
    try:
        key = write_roster(open_store(args.store, endpoint_url=args.endpoint_url))
    except StoreError as exc:
        print(f"factory-sim roster: failed: {exc}")
        return 1
    print(json.dumps({"key": key, "crew": len(CRAFTSMEN), "store": args.store}))
    return 0
