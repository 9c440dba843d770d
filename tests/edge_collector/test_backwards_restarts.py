"""A sensor that went backwards (restart with its clock behind) is recorded ONCE, across collector restarts.

Before issue 14 the "already recorded" state lived in memory: each collector restart while the sensor
was still behind the cursor recorded the same sensor_seq_backwards gap again (overlapping records, and
`status` summed them into lost samples that were all in S3).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.support.collector import (
    PYTHON,
    REPO,
    RETENTION_S,
    SPEED,
    SensorThread,
    TestClock,
    check,
    collector_env,
    finish,
    start,
    wait_until,
)


def test_restarts_while_the_sensor_is_behind_record_exactly_one_backwards_gap_per_channel(
    rig: dict[str, Any],
) -> None:
    col = start(rig)
    time.sleep(1.5)
    rig["clock"].pause()
    port = rig["sensor"].port
    rig["tcp"].reset_all()
    rig["sensor"].stop()
    clock2 = TestClock(rig["clock"]() - 480 * 10**9, SPEED)  # 480 virtual s behind: 8 s real to catch up
    rig["sensor"] = SensorThread(clock2, retention_s=RETENTION_S, port=port)
    rig["clock"] = clock2
    kind = 'edge_sensor_anomalies_total{kind="seq_backwards"}'
    wait_until(lambda: col.metric(kind) > 0, 20, "backwards detected")
    time.sleep(0.5)  # its gap record committed
    for _ in range(3):  # each life polls the sensor, still behind the cursor, several times
        col.stop()
        col = start(rig, resume=False)
        time.sleep(1.0)
    time.sleep(5.0)  # the restarted sensor overtakes the old cursor
    heads = finish(rig, col)
    cov = check(rig, heads, allow=("sensor_seq_backwards",))
    back = [(cid, g) for cid, gs in cov.gaps.items() for g in gs if g[2] == "sensor_seq_backwards"]
    assert sorted(cid for cid, _ in back) == sorted(heads), back  # one record per channel, no repeat
    env = collector_env(
        spool_dir=rig["spool"], store_url=f"s3://{rig['bucket']}", s3_endpoint_url=rig["store"].endpoint_url
    )
    done = subprocess.run([PYTHON, "-m", "edge_collector.cli", "status", "--store", "--verify-raw"], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=True)  # fmt: skip
    ledger = json.loads(done.stdout)["ledger"]["store"]
    assert ledger["by_reason"]["sensor_seq_backwards"]["lost_samples"] == 0  # re-issued seqs, all stored
    assert ledger["lost_samples"] == 0 and ledger["verified_raw"]["lost_but_stored"] == 0
