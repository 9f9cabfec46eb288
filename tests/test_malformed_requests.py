"""Request bytes that do not decode, sent to every method the server offers, through a real
channel: each call ends INVALID_ARGUMENT naming the message type (never UNKNOWN or INTERNAL,
never an exception class), a stream keeps the answers it gave before the bad message, and
the server goes on serving."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tickserve_client import make_tick
from tickserve_proto.inference import grpc_service_pb2 as oip
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL

SERVICES = (
    pb.DESCRIPTOR.services_by_name["SignalService"],
    pb.DESCRIPTOR.services_by_name["ModelRepositoryService"],
    oip.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)
METHODS = [(service, method) for service in SERVICES for method in service.methods]
NOT_PROTOBUF = b"\xff\xff\xff\xff\xff"  # a field tag whose varint never ends


def _length_delimited(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _call(channel: grpc.Channel, service, method, messages: list[bytes]):
    path = f"/{service.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        return list(channel.stream_stream(path)(iter(messages), timeout=10))
    if method.client_streaming:
        return channel.stream_unary(path)(iter(messages), timeout=10)
    if method.server_streaming:
        return list(channel.unary_stream(path)(messages[0], timeout=10))
    return channel.unary_unary(path)(messages[0], timeout=10)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_bytes_that_are_not_protobuf_are_invalid_argument_on_every_method(channel, service, method):
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, service, method, [NOT_PROTOBUF])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.full_name, err.value.details())
    assert err.value.details() == f"request: the bytes sent are not a valid {method.input_type.full_name} message"


def test_a_string_that_is_not_utf8_is_invalid_argument_and_the_stream_keeps_its_answers(channel, client):
    """A Tick whose instrument is not UTF-8, after one good tick: the good one is answered, then the
    call ends INVALID_ARGUMENT; the server serves the next call."""
    tick_field = pb.StreamSignalsRequest.DESCRIPTOR.fields_by_name["tick"].number
    instrument_field = pb.Tick.DESCRIPTOR.fields_by_name["instrument"].number
    bad = _length_delimited(tick_field, _length_delimited(instrument_field, b"\xff\xfe"))
    good = pb.StreamSignalsRequest(tick=make_tick("SIMA", 1, [(100.0, 5.0)], [(100.01, 4.0)])).SerializeToString()
    config = pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL)).SerializeToString()
    answers = []
    call = channel.stream_stream("/tickserve.v1.SignalService/StreamSignals")(iter([config, good, bad]), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        for answer in call:
            answers.append(pb.StreamSignalsResponse.FromString(answer))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tickserve.v1.StreamSignalsRequest" in err.value.details() and "<class" not in err.value.details()
    assert [a.results[0].WhichOneof("result") for a in answers] == ["signal"]
    signals = client.predict([make_tick("SIMA", 1, [(100.0, 5.0)], [(100.01, 4.0)])], model=MODEL)
    assert len(signals) == 1
