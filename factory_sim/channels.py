"""Channel catalogue of the simulated sensor system and the exact seq <-> time mapping.

Sample ``seq`` of every channel is at ``ORIGIN_NS + seq * period_ns`` (integer arithmetic) so any
party can address a sample by (line, channel, seq) without floating-point drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig

FAST_CHANNELS: tuple[tuple[str, str], ...] = (
    ("machine_state", "state"),
    ("temp_zone1", "degC"),
    ("temp_zone2", "degC"),
    ("temp_zone3", "degC"),
    ("temp_die", "degC"),
    ("mech_angle", "deg"),
    ("mech_position", "mm"),
    ("motor_current", "A"),
    ("feed_motor_current", "A"),
    ("vibration_rms", "mm/s"),
    ("vibration_peak", "mm/s"),
    ("pressure_actual", "bar"),
    ("feed_rate_actual", "strokes/min"),
    ("torque", "Nm"),
    ("motor_speed", "rpm"),
    ("coolant_temp", "degC"),
    ("ambient_temp", "degC"),
    ("humidity", "%RH"),
    ("power_kw", "kW"),
    ("material_temp", "degC"),
)
"""Fast channels (ids 1..20, in this order), sampled at ``SimConfig.fast_rate_hz``."""

SLOW_CHANNELS: tuple[tuple[str, str], ...] = (
    ("sp_temperature", "degC"),
    ("sp_feed_rate", "strokes/min"),
    ("sp_pressure", "bar"),
    ("lot_moisture", "%"),
    ("lot_hardness", "HB"),
    ("lot_density", "g/cm3"),
    ("lot_impurity", "%"),
    ("production_id", "id"),
    ("set_by", "code"),
    ("qa_production_id", "id"),
    ("qa_quality", "score"),
    ("fault_code", "code"),
)
"""Slow channels (ids 21..32, in this order), sampled at ``SimConfig.slow_rate_hz``."""

EXTRA_PREFIX = "vib_band_"


@dataclass(frozen=True)
class Channel:
    """One sensor channel; ``id`` is a stable u16 (1..N) across runs for the same config."""

    id: int
    name: str
    unit: str
    rate_hz: float

    def __post_init__(self) -> None:
        if not 1 <= self.id <= 0xFFFF:
            raise ValueError(f"id: must be in 1..65535, got {self.id}")
        period = round(NS_PER_S / self.rate_hz) if self.rate_hz > 0 else 0
        if period <= 0 or abs(NS_PER_S / self.rate_hz - period) > 1e-6:
            raise ValueError(f"rate_hz: 1e9 / rate_hz must be a positive integer, got {self.rate_hz!r}")

    @property
    def period_ns(self) -> int:
        """Exact sample period in ns (rates are validated to divide 1e9)."""
        return round(NS_PER_S / self.rate_hz)


def build_channels(cfg: SimConfig) -> tuple[Channel, ...]:
    """The catalogue: 20 fast, 12 slow, then ``cfg.extra_channels`` fast ``vib_band_XX`` channels."""
    out: list[Channel] = []
    for name, unit in FAST_CHANNELS:
        out.append(Channel(len(out) + 1, name, unit, cfg.fast_rate_hz))
    for name, unit in SLOW_CHANNELS:
        out.append(Channel(len(out) + 1, name, unit, cfg.slow_rate_hz))
    width = max(2, len(str(cfg.extra_channels)))
    for k in range(1, cfg.extra_channels + 1):
        out.append(Channel(len(out) + 1, f"{EXTRA_PREFIX}{k:0{width}d}", "mm/s", cfg.fast_rate_hz))
    return tuple(out)


def seq_at(channel: Channel, t_ns: int) -> int:
    """First seq whose timestamp is >= ``t_ns`` (ceiling division, exact for any int)."""
    return -((ORIGIN_NS - t_ns) // channel.period_ns)


def t_of_seq(channel: Channel, seq: int) -> int:
    """Timestamp of sample ``seq``: ``ORIGIN_NS + seq * period_ns`` (exact)."""
    return ORIGIN_NS + seq * channel.period_ns
