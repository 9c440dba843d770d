"""The live sensor server equals history sample for sample at every moment, shift ends included.

Issue 14 #13: for about 60 s after the last production of a shift the live plan did not know yet that
no further production would start (it only found out when it tried to plan one at the changeover's
end), so the live server served HOLD (the production's setpoint and heating) where history, planned
with the whole shift, has STANDBY. The test drives the real server over TCP with a manual clock in
small steps across several shift ends, reading every new sample of every channel as it is produced,
and compares each one with `signals.generate()` on a fresh timeline (history).
"""

from __future__ import annotations

import asyncio

import numpy as np

from edge_collector.sensor_client import SensorClient
from factory_sim.channels import build_channels, seq_at
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.craftsmen import shift_index_at
from factory_sim.schedule import LineTimeline
from factory_sim.server import SensorServer
from factory_sim.signals import generate

CFG = SimConfig(seed=11)
STEP_NS = 2 * NS_PER_S  # the clock moves this much between two reads (well under every plan decision)
BEFORE_S, AFTER_S = 30, 30  # read from this long before the last production's end to after the shift end


class ManualClock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def _shift_end_windows(first_shift: int, shifts: int) -> list[tuple[int, int]]:
    """[last production's end - BEFORE_S, shift end + AFTER_S) of consecutive shifts (from history)."""
    history = LineTimeline(CFG, "L1")
    out = []
    for k in range(first_shift, first_shift + shifts):
        plan = history.shift_plan(k)
        assert plan.complete and plan.productions, k
        last_end = plan.productions[-1].fault_end_ns
        out.append((last_end - BEFORE_S * NS_PER_S, plan.end_ns + AFTER_S * NS_PER_S))
    return out


def test_live_server_equals_history_across_shift_ends_sample_for_sample() -> None:
    start_shift = shift_index_at(ORIGIN_NS + 40 * 86400 * NS_PER_S)
    windows = _shift_end_windows(start_shift, 3)
    channels = build_channels(CFG)
    history = LineTimeline(CFG, "L1")
    served: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {ch.id: [] for ch in channels}

    async def body() -> None:
        clock = ManualClock(windows[0][0])
        # tick_s is long: the test moves the ring itself (advance) after each clock step.
        async with (
            SensorServer(CFG, "L1", clock=clock, tick_s=3600.0) as srv,
            SensorClient("127.0.0.1", srv.port) as client,
        ):
            for lo, hi in windows:
                clock.now_ns = lo
                srv.advance()
                cursor = {ch.id: seq_at(ch, lo) for ch in channels}
                while clock.now_ns < hi:
                    clock.now_ns += STEP_NS
                    srv.advance()
                    reads = await client.read(sorted(cursor.items()), 100_000)
                    for r in reads:
                        assert not r.gap, (r.channel_id, r.requested_seq)
                        if r.count:
                            served[r.channel_id].append((r.first_seq, r.t_ns.copy(), r.values.copy()))
                            cursor[r.channel_id] = r.first_seq + r.count

    asyncio.run(asyncio.wait_for(body(), 120))
    differing: dict[str, int] = {}
    total = 0
    for ch in channels:
        for first, t_ns, values in served[ch.id]:
            t, v = generate(history, ch, first, first + len(t_ns))
            assert np.array_equal(t, t_ns), ch.name
            diff = int(np.count_nonzero(np.asarray(v).view(np.int64) != np.asarray(values).view(np.int64)))
            total += len(t_ns)
            if diff:
                differing[ch.name] = differing.get(ch.name, 0) + diff
    assert total > len(channels) * 3 * (BEFORE_S + AFTER_S)  # every window was read through
    assert differing == {}, f"live samples differing from history, per channel: {differing}"
