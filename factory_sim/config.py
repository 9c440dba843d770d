"""Simulation configuration shared by every part of the simulated factory.

One frozen dataclass so that the history generator, the TCP server and the control loop derive
identical signals from identical settings (the seed is the only source of randomness).
"""

from __future__ import annotations

from dataclasses import dataclass

ORIGIN_NS = 1767225600 * 10**9
"""2026-01-01T00:00:00Z: seq 0 of every channel is at this instant."""

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class SimConfig:
    """Settings of one simulated factory; validated at construction so errors name the field."""

    seed: int = 42
    lines: tuple[str, ...] = ("L1",)
    fast_rate_hz: float = 10.0
    slow_rate_hz: float = 1.0
    extra_channels: int = 0
    retention_s: float = 600.0
    crew: tuple[str, ...] = ()
    """Craftsmen (by name) on the line's roster, a name once per person on it; () = all five.
    The skill mix of the line: e.g. ("anna", "dmitri", "emil") is one expert and two novices."""

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: must be an integer in [0, 2**63), got {self.seed!r}")
        if not self.lines:
            raise ValueError("lines: at least one line name is required")
        if len(set(self.lines)) != len(self.lines):
            raise ValueError(f"lines: names must be unique, got {self.lines!r}")
        for line in self.lines:
            if (
                not isinstance(line, str)
                or not line
                or not line.isascii()
                or not line.replace("_", "").isalnum()
            ):
                raise ValueError(
                    f"lines: {line!r} must be a non-empty ASCII alphanumeric name (underscore allowed)"
                )
        for name in ("fast_rate_hz", "slow_rate_hz"):
            rate = getattr(self, name)
            if not rate > 0:
                raise ValueError(f"{name}: must be > 0, got {rate!r}")
            period = round(NS_PER_S / rate)
            if period <= 0 or abs(NS_PER_S / rate - period) > 1e-6:
                raise ValueError(f"{name}: 1e9 / rate must be an integer number of ns, got {rate!r}")
        if not isinstance(self.extra_channels, int) or not 0 <= self.extra_channels <= 999:
            raise ValueError(f"extra_channels: must be an integer in [0, 999], got {self.extra_channels!r}")
        if not self.retention_s > 0:
            raise ValueError(f"retention_s: must be > 0, got {self.retention_s!r}")
        from factory_sim.craftsmen import BY_NAME  # the roster's names (craftsmen imports this module)

        unknown = [name for name in self.crew if name not in BY_NAME]
        if unknown or len(set(self.crew)) != len(self.crew):
            raise ValueError(
                f"crew: names must be distinct craftsmen of {sorted(BY_NAME)}, got {list(self.crew)!r}"
            )
