"""Raw object format and key layout: round-trips, validation of hostile input, key determinism."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory_core.layout import batch_key, date_prefix, gap_key, hour_prefix, parse_key, processed_key
from factory_core.rawformat import (
    GAPS_MAGIC,
    MAGIC,
    ChannelBlock,
    GapRecord,
    RawBatch,
    RawFormatError,
    decode_batch,
    decode_gaps,
    encode_batch,
    encode_gaps,
    header_bytes_needed,
    read_header,
)

ORIGIN_NS = 1767225600 * 10**9
PERIOD = 100_000_000


def block(cid: int, first_seq: int, n: int, *, period: int = PERIOD, seed: int = 0) -> ChannelBlock:
    rng = np.random.default_rng(seed + cid)
    t = ORIGIN_NS + (first_seq + np.arange(n, dtype=np.int64)) * period
    return ChannelBlock(cid, f"ch_{cid}", "unit", 1e9 / period, first_seq, t, rng.normal(20, 3, n))


def batch(*blocks: ChannelBlock, line: str = "L1", group: str = "all") -> RawBatch:
    return RawBatch(line, group, tuple(blocks))


# ------------------------------------------------------------------------------------------ round-trip

special = st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, np.finfo(float).max])


@st.composite
def blocks_st(draw: st.DrawFn) -> RawBatch:
    ids = draw(st.lists(st.integers(0, 0xFFFF), unique=True, max_size=5))
    out = []
    for cid in ids:
        n = draw(st.integers(0, 40))
        first_seq = draw(st.integers(0, 2**40))
        start = draw(st.integers(-(2**60), 2**60))
        steps = draw(st.lists(st.integers(1, 10**12), min_size=n, max_size=n))
        t = (
            start + np.cumsum(np.array(steps, dtype=np.int64), dtype=np.int64)
            if n
            else np.array([], np.int64)
        )
        raw_bits = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
        values = np.array(raw_bits, dtype=np.uint64).view(np.float64)  # any bit pattern, NaN payloads too
        if n and draw(st.booleans()):
            values[draw(st.integers(0, n - 1))] = draw(special)
        name = draw(st.text(min_size=1, max_size=12))
        unit = draw(st.text(max_size=6))
        rate = draw(st.floats(min_value=1e-3, max_value=1e6))
        out.append(ChannelBlock(cid, name, unit, rate, first_seq, t, values))
    line = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,8}", fullmatch=True))
    group = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,8}", fullmatch=True))
    return RawBatch(line, group, tuple(out))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=blocks_st(), encoding=st.sampled_from(["shuffle8", "plain"]))
def test_roundtrip_bit_exact(b: RawBatch, encoding: str) -> None:
    data = encode_batch(b, value_encoding=encoding)
    back = decode_batch(data)
    assert back == b
    for orig, got in zip(b.blocks, back.blocks, strict=True):
        assert got.t_ns.dtype == np.int64 and got.values.dtype == np.float64
        assert got.values.tobytes() == np.asarray(orig.values, "<f8").tobytes()
    assert encode_batch(back, value_encoding=encoding) == data  # deterministic bytes


def test_nan_inf_survive() -> None:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1.5])
    values_bits = values.copy().view(np.uint64)
    values_bits[0] = 0x7FF8_0000_DEAD_BEEF  # NaN with a payload
    b = batch(
        ChannelBlock(3, "x", "u", 10.0, 7, ORIGIN_NS + np.arange(5) * PERIOD, values_bits.view(np.float64))
    )
    got = decode_batch(encode_batch(b)).blocks[0]
    assert got.values.view(np.uint64).tolist() == values_bits.tolist()


def test_empty_batch_and_empty_blocks_roundtrip() -> None:
    empty = batch()
    assert decode_batch(encode_batch(empty)) == empty
    with_empty = batch(block(1, 5, 0), block(2, 0, 3))
    assert decode_batch(encode_batch(with_empty)) == with_empty
    with pytest.raises(RawFormatError, match="no samples"):
        batch_key(empty)


def test_accepts_other_numeric_dtypes() -> None:
    b = batch(
        ChannelBlock(1, "x", "u", 1.0, 0, np.array([1, 2, 3], np.int32), np.array([1, 2, 3], np.float32))
    )
    got = decode_batch(encode_batch(b)).blocks[0]
    assert got.t_ns.tolist() == [1, 2, 3] and got.values.tolist() == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------------- encode validation


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (batch(block(1, 0, 3), block(1, 3, 3)), "appears twice"),
        (batch(block(70000, 0, 2)), "u16"),
        (batch(block(1, 0, 2), line="L/1"), "line"),
        (batch(block(1, 0, 2), group="g_1"), "group"),
        (batch(block(1, 0, 2), group="a/b"), "group"),
        (
            batch(ChannelBlock(1, "x", "u", 1.0, 0, np.array([2, 1]), np.array([0.0, 1.0]))),
            "strictly increasing",
        ),
        (batch(ChannelBlock(1, "x", "u", 1.0, 0, np.array([1, 2]), np.array([0.0]))), "equal length"),
        (batch(ChannelBlock(1, "x", "u", 0.0, 0, np.array([1]), np.array([0.0]))), "rate_hz"),
        (batch(ChannelBlock(1, "x", "u", 1.0, -1, np.array([1]), np.array([0.0]))), "first_seq"),
        (batch(ChannelBlock(1, "", "u", 1.0, 0, np.array([1]), np.array([0.0]))), "name"),
        (batch(ChannelBlock(1, "x", "u", 1.0, 0, np.array([1.5]), np.array([0.0]))), "integer"),
    ],
)
def test_encode_rejects_bad_batches(bad: RawBatch, message: str) -> None:
    with pytest.raises(RawFormatError, match=message):
        encode_batch(bad)


# ----------------------------------------------------------------------------------- decode validation


def _valid() -> bytes:
    return encode_batch(batch(block(1, 0, 50), block(2, 10, 20)))


def _split(data: bytes) -> tuple[dict, bytes]:
    (hlen,) = struct.unpack_from("<I", data, 10)
    return json.loads(data[18 : 18 + hlen]), data[18 + hlen :]


def _raw(header_bytes: bytes, rest: bytes = b"", version: int = 1) -> bytes:
    """Assemble an object around arbitrary header bytes (with a correct header CRC)."""
    return (
        MAGIC
        + struct.pack("<HII", version, len(header_bytes), zlib.crc32(header_bytes))
        + header_bytes
        + rest
    )


def _join(header: dict, compressed: bytes) -> bytes:
    return _raw(json.dumps(header).encode(), compressed)


def _with_body(header: dict, body: bytes) -> bytes:
    header = {**header, "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
    return _join(header, zstandard.ZstdCompressor().compress(body))


def test_truncated_at_every_length_is_rejected() -> None:
    data = _valid()
    for n in range(len(data)):
        with pytest.raises(RawFormatError):
            decode_batch(data[:n])


def test_wrong_magic() -> None:
    with pytest.raises(RawFormatError, match="magic"):
        decode_batch(b"PK\x03\x04" + _valid()[4:])


def test_unsupported_version() -> None:
    data = bytearray(_valid())
    data[8:10] = struct.pack("<H", 99)
    with pytest.raises(RawFormatError, match="version 99"):
        decode_batch(bytes(data))


def test_header_crc_mismatch() -> None:
    data = bytearray(_valid())
    pos = data.index(b'"ch_1"') + 1
    data[pos] = ord("x")  # still valid JSON and schema: only the CRC can notice
    with pytest.raises(RawFormatError, match="header checksum"):
        decode_batch(bytes(data))


def test_bad_checksum() -> None:
    header, compressed = _split(_valid())
    header["body_sha256"] = "0" * 64
    with pytest.raises(RawFormatError, match="checksum"):
        decode_batch(_join(header, compressed))


def test_flipped_compressed_byte_rejected() -> None:
    data = bytearray(_valid())
    data[-20] ^= 0x40
    with pytest.raises(RawFormatError):
        decode_batch(bytes(data))


def test_trailing_garbage_rejected() -> None:
    with pytest.raises(RawFormatError):
        decode_batch(_valid() + b"\x00" * 16)
    with pytest.raises(RawFormatError):
        decode_batch(_valid() + zstandard.ZstdCompressor().compress(b"another frame"))


def test_body_length_disagrees_with_counts() -> None:
    header, compressed = _split(_valid())
    header["channels"][0]["count"] += 1
    with pytest.raises(RawFormatError, match="body_len"):
        decode_batch(_join(header, compressed))


def test_body_shorter_than_declared() -> None:
    header, compressed = _split(_valid())
    body = zstandard.ZstdDecompressor().decompress(compressed)
    header["body_len"] += 16
    header["channels"][0]["count"] += 1
    with pytest.raises(RawFormatError, match="truncated"):
        decode_batch(_join(header, zstandard.ZstdCompressor().compress(body)))


def test_huge_declared_count_does_not_allocate() -> None:
    """A header claiming ~1 GiB over a tiny body fails by reading the data, not by allocating."""
    header, compressed = _split(_valid())
    header["channels"][0]["count"] = 2**26
    header["body_len"] = 16 * (2**26 + 20)
    with pytest.raises(RawFormatError, match="truncated"):
        decode_batch(_join(header, compressed))
    header["channels"][0]["count"] = 2**62
    with pytest.raises(RawFormatError, match="count"):
        decode_batch(_join(header, compressed))


def test_decompression_bomb_is_cut_at_declared_length() -> None:
    header, _ = _split(_valid())
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * (64 * 1024 * 1024))
    with pytest.raises(RawFormatError, match="longer than"):
        decode_batch(_join(header, bomb))


def test_timestamps_must_match_header() -> None:
    header, compressed = _split(_valid())
    header["channels"][1]["t_last_ns"] += 1
    with pytest.raises(RawFormatError, match="t_last_ns"):
        decode_batch(_join(header, compressed))


def test_non_increasing_decoded_timestamps_rejected() -> None:
    header, compressed = _split(encode_batch(batch(block(1, 0, 3)), value_encoding="plain"))
    body = bytearray(zstandard.ZstdDecompressor().decompress(compressed))
    body[8:16] = struct.pack("<q", 0)  # second delta 0
    header["channels"][0]["t_last_ns"] -= PERIOD
    with pytest.raises(RawFormatError, match="strictly increasing"):
        decode_batch(_with_body(header, bytes(body)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("line"), "'line' is missing"),
        (lambda h: h.update(line=7), "'line' must be"),
        (lambda h: h.update(format="csv"), "format"),
        (lambda h: h.update(version=2), "version"),
        (lambda h: h.update(compression="gzip"), "compression"),
        (lambda h: h.update(value_encoding="xor"), "value_encoding"),
        (lambda h: h.update(channels={}), "'channels' must be"),
        (lambda h: h["channels"].append(h["channels"][0]), "twice"),
        (lambda h: h["channels"][0].update(id=-1), "'id'"),
        (lambda h: h["channels"][0].update(count=True), "bool"),
        (lambda h: h["channels"][0].update(rate_hz=-1.0), "rate_hz"),
        (lambda h: h["channels"][0].update(rate_hz=10**400), "rate_hz"),
        (lambda h: h["channels"][0].pop("unit"), "'unit' is missing"),
        (lambda h: h["channels"][0].update(t_first_ns=None), "null exactly"),
        (lambda h: h.update(body_sha256="xyz"), "64 lowercase hex"),
    ],
)
def test_header_schema_violations(mutate, message: str) -> None:
    header, compressed = _split(_valid())
    mutate(header)
    with pytest.raises(RawFormatError, match=message):
        decode_batch(_join(header, compressed))


def test_header_not_json() -> None:
    data = _raw(b"{{{{", b"rest")
    with pytest.raises(RawFormatError, match="JSON"):
        decode_batch(data)


def test_header_length_beyond_data() -> None:
    data = MAGIC + struct.pack("<HII", 1, 1000, 0) + b"{}"
    with pytest.raises(RawFormatError, match="truncated"):
        decode_batch(data)


# ------------------------------------------------------------------------------------------------ keys


def test_key_layout_and_determinism() -> None:
    b = batch(block(1, 36000, 3000), block(2, 36000, 3000))
    key = batch_key(b)
    assert key == batch_key(batch(block(1, 36000, 3000, seed=9), block(2, 36000, 3000, seed=9)))
    assert key == batch_key(batch(block(2, 36000, 3000), block(1, 36000, 3000)))  # order-independent
    assert key.startswith("raw/line=L1/date=2026-01-01/hour=01/L1_all_20260101T010000000000_")
    assert key.endswith(".fsr")
    info = parse_key(key)
    assert (info.kind, info.line, info.date, info.hour, info.group) == (
        "raw",
        "L1",
        dt.date(2026, 1, 1),
        1,
        "all",
    )
    assert info.start_ns == ORIGIN_NS + 36000 * PERIOD
    assert len(info.digest) == 16


def test_keys_differ_for_different_content() -> None:
    base = [block(1, 100, 10), block(2, 100, 10)]
    variants = [
        batch(*base),
        batch(block(1, 100, 11), block(2, 100, 10)),
        batch(block(1, 100, 10), block(2, 101, 10)),
        batch(block(1, 100, 10), block(3, 100, 10)),
        batch(block(1, 100, 10)),
        batch(*base, block(4, 0, 0)),
        batch(*base, group="g2"),
        batch(*base, line="L2"),
        batch(*base, line="L_all"),
    ]
    keys = {batch_key(v) for v in variants}
    assert len(keys) == len(variants)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 10**6), st.integers(1, 500)), min_size=2, max_size=40
    )
)
def test_no_collisions_between_distinct_seq_ranges(specs: list[tuple[int, int, int]]) -> None:
    seen: dict[str, tuple[int, int, int]] = {}
    for cid, seq, n in specs:
        key = batch_key(batch(ChannelBlock(cid, "x", "u", 10.0, seq, ORIGIN_NS + np.arange(n), np.zeros(n))))
        assert seen.setdefault(key, (cid, seq, n)) == (cid, seq, n)


@settings(max_examples=100, deadline=None)
@given(
    line=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True),
    group=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True),
    seq=st.integers(0, 10**9),
)
def test_parse_key_inverts_batch_key(line: str, group: str, seq: int) -> None:
    key = batch_key(batch(block(1, seq, 3), line=line, group=group))
    info = parse_key(key)
    assert (info.line, info.group, info.start_ns) == (line, group, ORIGIN_NS + seq * PERIOD)
    assert key.startswith(hour_prefix(line, info.date, info.hour))


def test_straddling_batch_lives_under_earliest_sample_date() -> None:
    midnight = ORIGIN_NS + 86400 * 10**9
    t = midnight - 5 * PERIOD + np.arange(10, dtype=np.int64) * PERIOD
    b = batch(ChannelBlock(1, "x", "u", 10.0, 864000 - 5, t, np.zeros(10)))
    key = batch_key(b)
    assert key.startswith("raw/line=L1/date=2026-01-01/hour=23/")
    assert parse_key(key).date == dt.date(2026, 1, 1)


def test_prefix_helpers() -> None:
    assert date_prefix("raw", "L1", dt.date(2026, 1, 2)) == "raw/line=L1/date=2026-01-02/"
    assert date_prefix("gaps", "L2", "2026-03-04") == "gaps/line=L2/date=2026-03-04/"
    assert hour_prefix("L1", "2026-01-02", 7) == "raw/line=L1/date=2026-01-02/hour=07/"
    assert processed_key("L1", "2026-01-02") == "processed/line=L1/date=2026-01-02/productions.parquet"
    assert parse_key(processed_key("L1", "2026-01-02")).kind == "processed"
    assert parse_key("models/registry.json").kind == "models"
    for bad in ["2026-1-2", "2026-02-30", "tomorrow"]:
        with pytest.raises(RawFormatError, match="date"):
            date_prefix("raw", "L1", bad)
    with pytest.raises(RawFormatError, match="kind"):
        date_prefix("models", "L1", "2026-01-01")


@pytest.mark.parametrize(
    "key",
    [
        "raw/line=L1/date=2026-01-01/hour=02/L1_all_20260101T010000000000_0123456789abcdef.fsr",  # hour lie
        "raw/line=L1/date=2026-01-02/hour=01/L1_all_20260101T010000000000_0123456789abcdef.fsr",  # date lie
        "raw/line=L1/date=2026-01-01/hour=01/L2_all_20260101T010000000000_0123456789abcdef.fsr",  # line lie
        "raw/line=L1/date=2026-01-01/hour=01/L1_all_20260101T010000000000_0123.fsr",
        "raw/line=L1/date=2026-01-01/hour=01/L1_all_20261301T010000000000_0123456789abcdef.fsr",
        "other/thing",
    ],
)
def test_parse_key_rejects_malformed(key: str) -> None:
    with pytest.raises(RawFormatError, match="key"):
        parse_key(key)


# ------------------------------------------------------------------------------------------------ gaps


def gap(cid: int, a: int, b: int, line: str = "L1") -> GapRecord:
    return GapRecord(
        line, cid, f"ch_{cid}", a, b, ORIGIN_NS + a * PERIOD, ORIGIN_NS + b * PERIOD, ORIGIN_NS, "retention"
    )


def test_gaps_roundtrip_sorted_and_deterministic() -> None:
    gaps = [gap(2, 10, 20), gap(1, 5, 6)]
    data = encode_gaps("L1", gaps)
    assert data.startswith(GAPS_MAGIC)
    assert decode_gaps(data) == [gap(1, 5, 6), gap(2, 10, 20)]
    assert encode_gaps("L1", list(reversed(gaps))) == data


def test_gap_key_layout() -> None:
    key = gap_key("L1", [gap(2, 36000, 36010), gap(1, 36005, 36007)])
    assert key.startswith("gaps/line=L1/date=2026-01-01/L1_20260101T010000000000_")
    assert key == gap_key("L1", [gap(1, 36005, 36007), gap(2, 36000, 36010)])
    assert key != gap_key("L1", [gap(1, 36005, 36008), gap(2, 36000, 36010)])
    info = parse_key(key)
    assert (info.kind, info.line, info.start_ns) == ("gaps", "L1", ORIGIN_NS + 36000 * PERIOD)


@pytest.mark.parametrize(
    ("gaps", "message"),
    [
        ([], "at least one"),
        ([gap(1, 5, 5)], "lost_from_seq < lost_to_seq"),
        ([gap(1, 1, 2, line="L2")], "differs"),
        ([GapRecord("L1", 1, "x", 1, 2, 3, 4, 5, reason=7)], "reason"),  # type: ignore[arg-type]
    ],
)
def test_encode_gaps_rejects(gaps: list[GapRecord], message: str) -> None:
    with pytest.raises(RawFormatError, match=message):
        encode_gaps("L1", gaps)


def _gap_body(rows: list[object]) -> bytes:
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    return GAPS_MAGIC + zstandard.ZstdCompressor().compress(text.encode())


def test_decode_gaps_rejects_corruption() -> None:
    good = encode_gaps("L1", [gap(1, 1, 2)])
    with pytest.raises(RawFormatError, match="magic"):
        decode_gaps(MAGIC + good[8:])
    for n in range(len(good)):
        with pytest.raises(RawFormatError):
            decode_gaps(good[:n])
    head = {"format": "fsg", "version": 1, "line": "L1", "count": 2}
    row = {k: getattr(gap(1, 1, 2), k) for k in GapRecord.__dataclass_fields__}
    with pytest.raises(RawFormatError, match="count"):
        decode_gaps(_gap_body([head, row]))
    with pytest.raises(RawFormatError, match="exactly the fields"):
        decode_gaps(_gap_body([{**head, "count": 1}, {**row, "extra": 1}]))
    with pytest.raises(RawFormatError, match="lost_to_seq"):
        decode_gaps(_gap_body([{**head, "count": 1}, {**row, "lost_to_seq": 0}]))
    with pytest.raises(RawFormatError, match="version"):
        decode_gaps(_gap_body([{**head, "version": 9}]))


# ----------------------------------------------------------------------------------------------- fuzz

_VALID = encode_batch(batch(block(1, 0, 20), block(2, 5, 0), block(3, 7, 9)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_mutated_objects_raise_only_raw_format_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_VALID)
    for pos, mask in flips:
        data[pos] ^= mask
    try:
        decoded = decode_batch(bytes(data))
    except RawFormatError:
        return
    assert decoded == decode_batch(_VALID)  # only a flip zstd ignores can pass, and it changes nothing


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_raw_format_error(data: bytes) -> None:
    with pytest.raises(RawFormatError):
        decode_batch(data)
    with pytest.raises(RawFormatError):
        decode_gaps(data)
    with pytest.raises(RawFormatError):
        decode_batch(_raw(data))


def test_hostile_json_headers() -> None:
    for text in [b"[" * 100_000, b'{"version": ' + b"9" * 5000 + b"}", b'{"channels": NaN}', b"\xff\xfe"]:
        with pytest.raises(RawFormatError, match="header"):
            decode_batch(_raw(text))


# ------------------------------------------------------------------------------------ header-only read


def test_header_read_from_the_first_bytes_says_what_the_full_decode_says() -> None:
    data = _valid()
    needed = header_bytes_needed(data[:18])
    assert needed < len(data)
    header = read_header(data[:needed], object_size=len(data))
    decoded = decode_batch(data)
    assert (header.line, header.group) == (decoded.line, decoded.group)
    assert [(c.channel_id, c.first_seq, c.count, c.t_first_ns, c.t_last_ns) for c in header.channels] == [
        (b.channel_id, b.first_seq, b.count, int(b.t_ns[0]), int(b.t_ns[-1])) for b in decoded.blocks
    ]
    assert header.samples == 70 and header.body_len == 16 * 70


def test_header_read_rejects_a_corrupt_header_a_missing_body_and_a_frame_of_another_length() -> None:
    data = _valid()
    needed = header_bytes_needed(data)
    flipped = data[:20] + bytes([data[20] ^ 0x01]) + data[21:]
    with pytest.raises(RawFormatError, match="header checksum mismatch"):
        read_header(flipped[:needed], object_size=len(data))
    header, compressed = _split(data)
    body_start = len(data) - len(compressed)
    with pytest.raises(RawFormatError, match="body is truncated"):
        read_header(data[:body_start])
    with pytest.raises(RawFormatError, match="zstd"):
        read_header(data[:body_start] + b"not zstd at all, no", object_size=len(data))
    other = zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * 32)
    with pytest.raises(RawFormatError, match="frame declares 32 bytes"):
        read_header(_join(header, other))


def test_header_read_cannot_see_a_damaged_body_which_the_full_decode_rejects() -> None:
    data = _valid()
    damaged = data[:-5]
    read_header(damaged[: header_bytes_needed(damaged)], object_size=len(damaged))
    with pytest.raises(RawFormatError):
        decode_batch(damaged)
