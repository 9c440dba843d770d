"""Fault injection for the simulated sensor system, so collector tests can meet real failure modes.

Faults are chosen per response, either by a deterministic schedule (response number -> fault; response
numbers count every response the server sends, from 1, across all connections) or by probabilities drawn
from a seeded RNG. Kinds and what the client sees:
- DELAY:    the response is sent after `delay_s`               -> client TimeoutError if delay > timeout
- DROP:     half the frame is sent, then the connection is reset -> ConnectionError
- TRUNCATE: the frame is cut short and the connection stays open -> TimeoutError, then the stream is
            desynchronised (the next response completes the cut frame with the wrong bytes: CRC error)
- CORRUPT:  one byte after the header is flipped                 -> ProtocolError (CRC mismatch)
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from factory_core.protocol import HEADER_SIZE


class Fault(StrEnum):
    DELAY = "delay"
    DROP = "drop"
    TRUNCATE = "truncate"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class FaultConfig:
    """What to inject; all-zero (the default) injects nothing."""

    delay_s: float = 0.0
    delay_prob: float = 0.0
    drop_prob: float = 0.0
    truncate_prob: float = 0.0
    corrupt_prob: float = 0.0
    seed: int = 0
    schedule: Mapping[int, Fault] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("delay_prob", "drop_prob", "truncate_prob", "corrupt_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault {name}={p} must be within [0, 1]")
        total = self.delay_prob + self.drop_prob + self.truncate_prob + self.corrupt_prob
        if total > 1.0:
            raise ValueError(f"fault probabilities sum to {total}, must be <= 1")
        if self.delay_s < 0:
            raise ValueError(f"fault delay_s={self.delay_s} must be >= 0")
        wants_delay = self.delay_prob > 0 or Fault.DELAY in self.schedule.values()
        if wants_delay and self.delay_s == 0:
            raise ValueError("delay faults are configured but fault delay_s is 0 (set --fault-delay-s)")
        for n, kind in self.schedule.items():
            if n < 1:
                raise ValueError(f"fault schedule response number {n} must be >= 1")
            if not isinstance(kind, Fault):
                raise ValueError(f"fault schedule entry {n}: {kind!r} is not a Fault")

    @property
    def active(self) -> bool:
        return bool(self.schedule) or (
            self.delay_prob + self.drop_prob + self.truncate_prob + self.corrupt_prob > 0
        )


class FaultPlan:
    """Decides the fault (if any) of each successive response; deterministic for a given config."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.responses = 0
        self.injected: dict[Fault, int] = dict.fromkeys(Fault, 0)

    def next_fault(self) -> Fault | None:
        self.responses += 1
        cfg = self.config
        fault = cfg.schedule.get(self.responses)
        if fault is None and cfg.active:
            x = self._rng.random()
            for kind, p in (
                (Fault.DELAY, cfg.delay_prob),
                (Fault.DROP, cfg.drop_prob),
                (Fault.TRUNCATE, cfg.truncate_prob),
                (Fault.CORRUPT, cfg.corrupt_prob),
            ):
                if x < p:
                    fault = kind
                    break
                x -= p
        if fault is not None:
            self.injected[fault] += 1
        return fault

    def corrupt(self, frame: bytes) -> bytes:
        """Flip one byte after the header (payload or CRC), so the frame still parses but fails its CRC."""
        pos = self._rng.randrange(HEADER_SIZE, len(frame))
        out = bytearray(frame)
        out[pos] ^= 0xFF
        return bytes(out)

    @staticmethod
    def truncate(frame: bytes) -> bytes:
        """Keep the header and about half of the rest: the receiver waits for bytes that never come."""
        return frame[: HEADER_SIZE + (len(frame) - HEADER_SIZE) // 2]

    @staticmethod
    def drop_prefix(frame: bytes) -> bytes:
        """The part of the frame sent before the connection is reset."""
        return frame[: max(1, len(frame) // 2)]


def parse_schedule(text: str) -> dict[int, Fault]:
    """Parse "3:corrupt,5:drop" (response number: fault kind)."""
    schedule: dict[int, Fault] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        num, sep, kind = item.partition(":")
        try:
            if not sep:
                raise ValueError
            n = int(num)
            schedule[n] = Fault(kind.strip().lower())
        except ValueError:
            kinds = "|".join(f.value for f in Fault)
            raise ValueError(
                f"--fault-schedule entry {item!r}: expected RESPONSE_NUMBER:{kinds}, e.g. 3:corrupt"
            ) from None
    return schedule


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The --fault-* flags of `factory-sim serve`."""
    g = parser.add_argument_group("fault injection (for tests)")
    g.add_argument("--fault-delay-s", type=float, default=0.0, help="delay of a DELAY fault in seconds")
    g.add_argument("--fault-delay-prob", type=float, default=0.0, help="probability a response is delayed")
    g.add_argument("--fault-drop-prob", type=float, default=0.0, help="probability of a reset mid-response")
    g.add_argument(
        "--fault-truncate-prob", type=float, default=0.0, help="probability a response frame is cut short"
    )
    g.add_argument(
        "--fault-corrupt-prob", type=float, default=0.0, help="probability one response byte is flipped"
    )
    g.add_argument("--fault-seed", type=int, default=0, help="seed of the fault RNG")
    g.add_argument(
        "--fault-schedule",
        default="",
        help="deterministic faults by server-wide response number, e.g. '3:corrupt,5:drop,7:delay'",
    )


def fault_config_from_args(args: argparse.Namespace) -> FaultConfig:
    return FaultConfig(
        delay_s=args.fault_delay_s,
        delay_prob=args.fault_delay_prob,
        drop_prob=args.fault_drop_prob,
        truncate_prob=args.fault_truncate_prob,
        corrupt_prob=args.fault_corrupt_prob,
        seed=args.fault_seed,
        schedule=parse_schedule(args.fault_schedule),
    )
