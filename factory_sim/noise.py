"""Counter-based deterministic randomness (splitmix64).

Every random number is a pure function of (key, counter), so any range of samples can be generated
independently, in any order, by any process, and still be bit-identical. Scalar (Python int) and
vectorized (numpy uint64) versions produce the same numbers.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

MASK64 = 0xFFFFFFFFFFFFFFFF
_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_INV_2_53 = 1.0 / 9007199254740992.0
_SQRT3 = math.sqrt(3.0)


def mix64(x: int) -> int:
    """splitmix64 finalizer on a Python int (wrapping to 64 bits)."""
    z = x & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def derive_key(*parts: int | str) -> int:
    """64-bit key from a tuple of ints/strings (strings hashed with BLAKE2b, so stable across runs)."""
    key = 0x6A09E667F3BCC908
    for part in parts:
        if isinstance(part, str):
            value = int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
        else:
            value = int(part) & MASK64
        key = mix64(key ^ mix64(value + _GAMMA))
    return key


def hash_at(key: int, counter: int) -> int:
    """Element ``counter`` of the splitmix64 stream ``key``."""
    return mix64(key + (counter + 1) * _GAMMA)


def uniform_at(key: int, counter: int) -> float:
    """Uniform in [0, 1) for (key, counter)."""
    return (hash_at(key, counter) >> 11) * _INV_2_53


def normal_at(key: int, counter: int) -> float:
    """Standard normal for (key, counter) (Box-Muller on two stream elements)."""
    u1 = 1.0 - uniform_at(key, 2 * counter)
    u2 = uniform_at(key, 2 * counter + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def hash_array(key: int, counters: np.ndarray) -> np.ndarray:
    """Vectorized ``hash_at`` over an int64/uint64 counter array (wrapping uint64 arithmetic)."""
    c = np.asarray(counters).astype(np.uint64, copy=False)
    z = (c + np.uint64(1)) * np.uint64(_GAMMA) + np.uint64(key & MASK64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def uniform_array(key: int, counters: np.ndarray) -> np.ndarray:
    """Vectorized ``uniform_at``."""
    return (hash_array(key, counters) >> np.uint64(11)).astype(np.float64) * _INV_2_53


def gauss_array(key: int, counters: np.ndarray) -> np.ndarray:
    """Approximately standard-normal sensor noise, one hash per sample.

    Irwin-Hall sum of the four 16-bit quarters of the hash, rescaled to unit variance: bounded
    (|x| <= 2*sqrt(3)), cheap (no log/cos), and good enough for measurement noise.
    """
    h = hash_array(key, counters)
    m = np.uint64(0xFFFF)
    s = (h & m).astype(np.float64)
    s += ((h >> np.uint64(16)) & m).astype(np.float64)
    s += ((h >> np.uint64(32)) & m).astype(np.float64)
    s += (h >> np.uint64(48)).astype(np.float64)
    return (s * (1.0 / 65536.0) - 2.0) * _SQRT3
