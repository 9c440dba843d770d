"""Wire protocol codec, pymodbus-framer style: the byte-exact vectors of docs/protocol.md decoded whole,
split at every byte boundary and one byte at a time; Hypothesis round-trips; hostile input."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory_core.protocol import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    MAX_READ_CHANNELS,
    SAMPLE_DTYPE,
    ChannelInfo,
    ChannelRead,
    ErrorCode,
    ErrorResponse,
    Frame,
    FrameDecoder,
    ListChannelsRequest,
    ListChannelsResponse,
    Message,
    MsgType,
    ProtocolError,
    ReadRequest,
    ReadResponse,
    RecordRead,
    StatusRequest,
    StatusResponse,
    decode_frames,
    decode_message,
    encode_frame,
    encode_message,
    encode_read_response_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ORIGIN = 1767225600 * 10**9
_BLOCK = re.compile(r"^```hex name=(\S+)([^\n]*)\n(.*?)^```", re.M | re.S)


def _vectors() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, attributes) for every ```hex block of the protocol document."""
    out = {}
    for name, attrs, body in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        hexdigits = "".join(line.split("#", 1)[0] for line in body.splitlines())
        out[name] = (bytes.fromhex("".join(hexdigits.split())), attrs.strip())
    return out


VECTORS = _vectors()

# What each valid vector must decode to (request id, message), written independently of the document.
EXPECTED: dict[str, tuple[int, Message]] = {
    "list_channels_request": (1, ListChannelsRequest()),
    "list_channels_response": (
        1,
        ListChannelsResponse(
            (ChannelInfo(1, "machine_state", "state", 10.0), ChannelInfo(21, "sp_temperature", "degC", 1.0))
        ),
    ),
    "read_request": (2, ReadRequest(((2, 1000), (21, 7)), 500)),
    "read_response": (
        2,
        ReadResponse(
            (
                ChannelRead(
                    2,
                    False,
                    1000,
                    1000,
                    1002,
                    np.array([ORIGIN + 100_000_000_000, ORIGIN + 100_100_000_000], dtype=np.int64),
                    np.array([182.5, -0.25]),
                ),
                ChannelRead(
                    21,
                    True,
                    7,
                    40,
                    41,
                    np.array([ORIGIN + 40_000_000_000], dtype=np.int64),
                    np.array([180.0]),
                ),
            )
        ),
    ),
    "read_response_ahead": (
        3,
        ReadResponse((ChannelRead(2, False, 5000, 5000, 1002, np.zeros(0, np.int64), np.zeros(0)),)),
    ),
    "status_request": (4, StatusRequest()),
    "status_response": (4, StatusResponse("factory-sim", "L1", ORIGIN + 3600 * 10**9, 600.0, 60.0, 32)),
    "error_response": (5, ErrorResponse(ErrorCode.UNKNOWN_CHANNEL, "unknown channel id(s) [999]")),
}
INVALID = {name: v for name, v in VECTORS.items() if "error=" in v[1]}


def _same(a: Message, b: Message) -> bool:
    if isinstance(a, ReadResponse) and isinstance(b, ReadResponse):
        return a.same_as(b)
    return a == b


def _check(frames: list[Frame], name: str) -> None:
    rid, expected = EXPECTED[name]
    assert len(frames) == 1
    assert frames[0].request_id == rid
    assert _same(decode_message(frames[0]), expected)


def test_document_has_every_vector() -> None:
    assert set(EXPECTED) <= set(VECTORS)
    assert {"bad_magic", "wrong_version", "unknown_type", "too_large", "bad_crc"} <= set(INVALID)
    assert {t for t in MsgType} == {MsgType(VECTORS[n][0][3]) for n in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_decodes_whole_and_reencodes(name: str) -> None:
    data = VECTORS[name][0]
    _check(FrameDecoder().feed(data), name)
    rid, expected = EXPECTED[name]
    assert encode_message(expected, rid) == data


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_split_at_every_boundary(name: str) -> None:
    data = VECTORS[name][0]
    for i in range(1, len(data)):
        dec = FrameDecoder()
        assert dec.feed(data[:i]) == []
        assert dec.buffered == i
        _check(dec.feed(data[i:]), name)
        assert dec.buffered == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_one_byte_at_a_time(name: str) -> None:
    data = VECTORS[name][0]
    dec = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        got = dec.feed(data[i : i + 1])
        assert got == [] or i == len(data) - 1
        frames += got
    _check(frames, name)


def test_all_vectors_back_to_back_in_one_stream() -> None:
    names = sorted(EXPECTED)
    stream = b"".join(VECTORS[n][0] for n in names)
    dec = FrameDecoder()
    frames = [f for i in range(0, len(stream), 7) for f in dec.feed(stream[i : i + 7])]
    assert [f.request_id for f in frames] == [EXPECTED[n][0] for n in names]
    for f, n in zip(frames, names, strict=True):
        assert _same(decode_message(f), EXPECTED[n][1])


@pytest.mark.parametrize("name", sorted(n for n, v in INVALID.items() if "payload" not in v[1]))
def test_invalid_framing_vectors_raise_whole_and_bytewise(name: str) -> None:
    data, attrs = INVALID[name]
    code = ErrorCode[re.search(r"error=(\w+)", attrs).group(1)]
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(data)
    assert exc.value.code == code
    # Fed one byte at a time, the error comes on the last byte of the vector, not later.
    dec = FrameDecoder()
    for i in range(len(data) - 1):
        assert dec.feed(data[i : i + 1]) == []
    with pytest.raises(ProtocolError):
        dec.feed(data[-1:])
    # The stream is unrecoverable: even a valid frame is refused afterwards.
    assert dec.failed
    with pytest.raises(ProtocolError):
        dec.feed(VECTORS["status_request"][0])


@pytest.mark.parametrize("name", sorted(n for n, v in INVALID.items() if "payload" in v[1]))
def test_invalid_payload_vectors_raise_with_request_id(name: str) -> None:
    data, _ = INVALID[name]
    (frame,) = FrameDecoder().feed(data)
    with pytest.raises(ProtocolError) as exc:
        decode_message(frame)
    assert exc.value.code == ErrorCode.BAD_REQUEST
    assert exc.value.request_id == frame.request_id != 0


def test_claimed_4gb_length_never_allocates() -> None:
    header = bytes.fromhex("fac7 0182 00000001 ffffffff")
    dec = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as exc:
            dec.feed(header + b"\x00" * 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.code == ErrorCode.TOO_LARGE
    assert dec.buffered == 0
    assert peak < 64 * 1024


def test_length_just_over_limit_rejected_and_limit_configurable() -> None:
    over = encode_frame(MsgType.READ, 1, b"")[:8] + (MAX_PAYLOAD + 1).to_bytes(4, "big")
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(over)
    small = FrameDecoder(max_payload=100)
    with pytest.raises(ProtocolError) as exc:
        small.feed(encode_frame(MsgType.READ, 1, b"\x00" * 101))
    assert exc.value.code == ErrorCode.TOO_LARGE and exc.value.request_id == 1
    assert small.buffered == 0


def test_read_response_with_lying_sample_count_is_refused_before_frombuffer() -> None:
    head = (
        bytes.fromhex("0001 0002 00 00") + b"\x00" * 24 + bytes.fromhex("ffffffff")
    )  # 4e9 samples, none sent
    with pytest.raises(ProtocolError, match="truncated"):
        decode_message(Frame(MsgType.READ_RESP, 3, head))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_prefix_waits_and_every_byte_flip_is_caught(name: str) -> None:
    data = VECTORS[name][0]
    for i in range(len(data)):
        assert FrameDecoder().feed(data[:i]) == []
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        dec = FrameDecoder()
        try:
            frames = dec.feed(bytes(flipped))
        except ProtocolError:
            continue
        # Only a larger payload_len can leave the decoder waiting; it must never yield a frame.
        assert frames == [] and 8 <= i < HEADER_SIZE


# ------------------------------------------------------------------------------------------ hypothesis

u16 = st.integers(0, 0xFFFF)
u64 = st.integers(0, 2**64 - 1)
short_text = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def channel_reads(draw: st.DrawFn) -> ChannelRead:
    n = draw(st.integers(0, 20))
    t = np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64)
    v = np.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), dtype=np.float64)
    return ChannelRead(draw(u16), draw(st.booleans()), draw(u64), draw(u64), draw(u64), t, v)


messages = st.one_of(
    st.just(ListChannelsRequest()),
    st.just(StatusRequest()),
    st.builds(
        ReadRequest,
        st.lists(st.tuples(u16, u64), min_size=1, max_size=50).map(tuple),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        ListChannelsResponse,
        st.lists(st.builds(ChannelInfo, u16, short_text, short_text, finite), max_size=20).map(tuple),
    ),
    st.builds(ReadResponse, st.lists(channel_reads(), max_size=6).map(tuple)),
    st.builds(StatusResponse, short_text, short_text, st.integers(-(2**63), 2**63 - 1), finite, finite, u16),
    st.builds(ErrorResponse, st.sampled_from(list(ErrorCode)), st.text(max_size=200)),
)


@settings(max_examples=300, deadline=None)
@given(msg=messages, rid=st.integers(0, 2**32 - 1), chunk=st.integers(1, 64))
def test_roundtrip_every_message_type(msg: Message, rid: int, chunk: int) -> None:
    data = encode_message(msg, rid)
    assert _same(decode_frames(data)[0], msg)
    dec = FrameDecoder()
    frames = [f for i in range(0, len(data), chunk) for f in dec.feed(data[i : i + chunk])]
    assert len(frames) == 1 and frames[0].request_id == rid
    assert _same(decode_message(frames[0]), msg)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), chunk=st.integers(1, 50))
def test_arbitrary_bytes_only_ever_raise_protocol_error(data: bytes, chunk: int) -> None:
    dec = FrameDecoder()
    try:
        for i in range(0, len(data), chunk):
            for frame in dec.feed(data[i : i + chunk]):
                decode_message(frame)
    except ProtocolError:
        return
    assert dec.buffered <= len(data)


@settings(max_examples=400, deadline=None)
@given(msg_type=st.sampled_from(list(MsgType)), payload=st.binary(max_size=200))
def test_arbitrary_payload_with_valid_crc_only_raises_protocol_error(
    msg_type: MsgType, payload: bytes
) -> None:
    (frame,) = FrameDecoder().feed(encode_frame(msg_type, 7, payload))
    try:
        decode_message(frame)
    except ProtocolError as exc:
        assert exc.request_id == 7


@settings(max_examples=100, deadline=None)
@given(reads=st.lists(channel_reads(), max_size=6), rid=st.integers(0, 2**32 - 1), data=st.data())
def test_record_encoder_is_byte_identical_to_generic_encoder(
    reads: list[ChannelRead], rid: int, data
) -> None:
    records = []
    for r in reads:
        rec = np.empty(r.count, dtype=SAMPLE_DTYPE)
        rec["t_ns"], rec["value"] = r.t_ns, r.values
        cut = data.draw(st.integers(0, r.count))  # as a wrapped ring hands them over: two chunks
        records.append(
            RecordRead(r.channel_id, r.gap, r.requested_seq, r.first_seq, r.next_seq, (rec[:cut], rec[cut:]))
        )
    assert bytes(encode_read_response_frame(rid, records)) == encode_message(ReadResponse(tuple(reads)), rid)


def test_encoder_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="channel_id"):
        encode_message(ReadRequest(((70000, 0),), 1), 1)
    with pytest.raises(ValueError, match="channels"):
        encode_message(ReadRequest((), 1), 1)
    with pytest.raises(ValueError, match="channels"):
        encode_message(ReadRequest(((1, 0),) * (MAX_READ_CHANNELS + 1), 1), 1)
    with pytest.raises(ValueError, match="request_id"):
        encode_message(StatusRequest(), 2**32)
    with pytest.raises(ValueError, match="255"):
        encode_message(ListChannelsResponse((ChannelInfo(1, "x" * 256, "u", 1.0),)), 1)


def test_unknown_error_code_from_newer_peer_is_kept() -> None:
    frame = encode_frame(MsgType.ERROR, 1, bytes.fromhex("0063 0002") + b"hi")
    (msg,) = decode_frames(frame)
    assert msg == ErrorResponse(99, "hi")
