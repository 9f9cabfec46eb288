"""The tick-input V2 models (`<model>.ticks`), driven by tritonclient.grpc against a real server.

A tritonclient user sends the book columns and must get exactly what SignalService.Predict
answers for the same ticks, bit for bit, without computing a feature.
"""

from __future__ import annotations

import numpy as np
import pytest

tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tickserve.serving.converters import frame_to_protos  # noqa: E402
from tickserve.simulate import simulate  # noqa: E402
from tickserve_proto.inference import grpc_service_pb2 as oip  # noqa: E402
from tickserve_proto.inference import grpc_service_pb2_grpc as oip_grpc  # noqa: E402
from tickserve_proto.v1 import tickserve_pb2 as pb  # noqa: E402

from .conftest import MODEL  # noqa: E402

TICKS_MODEL = f"{MODEL}.ticks"
BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")


@pytest.fixture(scope="module")
def triton(server):
    client = tritongrpc.InferenceServerClient(server.address)
    yield client
    client.close()


def tick_columns(ticks: list[pb.Tick]) -> dict[str, np.ndarray]:
    """The ticks as the tick model's input columns (every simulated tick has 10 levels)."""
    columns = {
        "instrument": np.array([t.instrument.encode() for t in ticks], dtype=object),
        "timestamp_ns": np.array([t.timestamp_ns for t in ticks], dtype=np.int64),
        "last_price": np.array([t.last_price for t in ticks]),
        "last_size": np.array([t.last_size for t in ticks]),
        "sequence": np.array([t.sequence for t in ticks], dtype=np.uint64),
        "aggressor": np.array([t.aggressor for t in ticks], dtype=np.int32),
    }
    for name in BOOK:
        columns[name] = np.array([list(getattr(t, name)) for t in ticks], dtype=np.float64)
    return columns


_DATATYPES = {"O": "BYTES", "i": "INT32", "u": "UINT64", "f": "FP64"}


def triton_inputs(columns: dict[str, np.ndarray]) -> list:
    inputs = []
    for name, values in columns.items():
        datatype = "INT64" if name == "timestamp_ns" else _DATATYPES[values.dtype.kind]
        tensor = tritongrpc.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def _error(fn, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    return info.value


def _assert_signals_equal(result, expected: list[pb.Signal]) -> None:
    probs = result.as_numpy("probabilities")
    want = np.array([(s.p_sell, s.p_hold, s.p_buy) for s in expected])
    assert probs.tobytes() == want.tobytes()  # bit for bit
    for output, enum in (("action", pb.Action), ("strength", pb.Strength), ("urgency", pb.Urgency), ("risk", pb.Risk)):
        got = [v.decode() for v in result.as_numpy(output)]
        prefix = enum.Name(getattr(expected[0], output)).split("_")[0] + "_"
        assert got == [enum.Name(getattr(s, output)).removeprefix(prefix) for s in expected], output
    for output in ("confidence", "edge_score"):
        assert result.as_numpy(output).tobytes() == np.array([getattr(s, output) for s in expected]).tobytes()
    assert result.as_numpy("warmed_up").tolist() == [s.warmed_up for s in expected]
    assert result.as_numpy("sequence_gap").tolist() == [s.sequence_gap for s in expected]


# --- metadata and readiness ------------------------------------------------------------------


def test_tick_model_metadata_and_readiness(triton, server):
    assert triton.is_model_ready(TICKS_MODEL) is True
    assert triton.is_model_ready(TICKS_MODEL, "1") is True
    assert triton.is_model_ready("no-such-model.ticks") is False
    meta = triton.get_model_metadata(TICKS_MODEL)
    assert meta.name == TICKS_MODEL and list(meta.versions) == ["1", "2"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("instrument", "BYTES", [-1]),
        ("timestamp_ns", "INT64", [-1]),
        ("last_price", "FP64", [-1]),
        ("last_size", "FP64", [-1]),
        *((name, "FP64", [-1, -1]) for name in BOOK),
        ("sequence", "UINT64", [-1]),
        ("aggressor", "INT32", [-1]),
    ]
    assert [t.name for t in meta.outputs] == [
        "probabilities",
        "action",
        "strength",
        "urgency",
        "risk",
        "confidence",
        "edge_score",
        "warmed_up",
        "sequence_gap",
    ]
    props = oip.ModelMetadataResponse.FromString(meta.SerializeToString()).properties
    assert props["model"] == MODEL and props["optional_inputs"] == "sequence,aggressor"


# --- ticks in, Predict's signals out ---------------------------------------------------------


@pytest.mark.parametrize("n", [3, 400])  # on the event loop; in a worker thread
def test_ticks_over_v2_equal_predict_bit_for_bit(triton, client, n):
    ticks = frame_to_protos(simulate(n, seed=41))
    expected = client.predict(ticks, model=MODEL)
    result = triton.infer(TICKS_MODEL, triton_inputs(tick_columns(ticks)), request_id="t-1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (TICKS_MODEL, "2", "t-1")
    _assert_signals_equal(result, expected)
    assert any(s.warmed_up for s in expected) or n < 100


def test_optional_inputs_left_out_and_a_pinned_version(triton, client):
    ticks = frame_to_protos(simulate(120, seed=42))
    for t in ticks:
        t.ClearField("sequence")
        t.aggressor = pb.SIDE_UNSPECIFIED
    expected = client.predict(ticks, model=MODEL, version="1")
    columns = tick_columns(ticks)
    del columns["sequence"], columns["aggressor"]
    result = triton.infer(TICKS_MODEL, triton_inputs(columns), model_version="1")
    assert result.get_response().model_version == "1"
    _assert_signals_equal(result, expected)


def test_typed_contents_in_typed_contents_out(channel, client):
    """A client that sends typed contents (grpcurl, JSON) gets typed contents back."""
    ticks = frame_to_protos(simulate(30, seed=43))
    expected = client.predict(ticks, model=MODEL)
    columns = tick_columns(ticks)
    request = oip.ModelInferRequest(model_name=TICKS_MODEL)
    for name, values in columns.items():
        tensor = request.inputs.add(name=name, shape=list(values.shape))
        if name == "instrument":
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(values.tolist())
        elif name == "timestamp_ns":
            tensor.datatype = "INT64"
            tensor.contents.int64_contents.extend(values.tolist())
        elif name == "sequence":
            tensor.datatype = "UINT64"
            tensor.contents.uint64_contents.extend(values.tolist())
        elif name == "aggressor":
            tensor.datatype = "INT32"
            tensor.contents.int_contents.extend(values.tolist())
        else:
            tensor.datatype = "FP64"
            tensor.contents.fp64_contents.extend(values.ravel().tolist())
    response = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert not response.raw_output_contents
    out = {o.name: o for o in response.outputs}
    assert list(out["probabilities"].contents.fp64_contents) == [
        p for s in expected for p in (s.p_sell, s.p_hold, s.p_buy)
    ]
    assert list(out["warmed_up"].contents.bool_contents) == [s.warmed_up for s in expected]
    assert [v.decode() for v in out["action"].contents.bytes_contents] == [
        pb.Action.Name(s.action).removeprefix("ACTION_") for s in expected
    ]


def test_requested_outputs_and_classification(triton, client):
    ticks = frame_to_protos(simulate(20, seed=44))
    expected = client.predict(ticks, model=MODEL)
    outputs = [tritongrpc.InferRequestedOutput("action"), tritongrpc.InferRequestedOutput("probabilities", 1)]
    result = triton.infer(TICKS_MODEL, triton_inputs(tick_columns(ticks)), outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["action", "probabilities"]
    top = [v.decode().split(":") for v in result.as_numpy("probabilities").ravel()]
    assert [float(v) for v, _, _ in top] == [max(s.p_sell, s.p_hold, s.p_buy) for s in expected]


# --- errors ------------------------------------------------------------------------------------


def test_a_bad_tick_fails_the_call_naming_the_input_row_and_value(triton):
    columns = tick_columns(frame_to_protos(simulate(40, seed=45)))
    columns["bid_price"][7, 0] = -1.5
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(columns))
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message().startswith("bid_price[7, 0]: ") and "-1.5" in e.message(), e.message()
    columns = tick_columns(frame_to_protos(simulate(40, seed=45)))
    columns["instrument"][2] = b""
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(columns))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and e.message().startswith("instrument[2]: "), e.message()


def test_malformed_tensors(triton):
    columns = tick_columns(frame_to_protos(simulate(10, seed=46)))
    missing = {k: v for k, v in columns.items() if k != "ask_size"}
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(missing))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and e.message().startswith("inputs: missing ask_size")

    short = dict(columns, last_size=columns["last_size"][:9])
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(short))
    assert "for 'last_size' has 9 ticks but inputs[0] ('instrument') has 10" in e.message()

    levels = dict(columns, ask_price=columns["ask_price"][:, :5])
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(levels))
    assert "[10, 5] for 'ask_price' has 5 levels but" in e.message()

    inputs = triton_inputs(columns)
    bad = tritongrpc.InferInput("last_price", [10], "FP32")
    bad.set_data_from_numpy(columns["last_price"].astype(np.float32))
    inputs[2] = bad
    e = _error(triton.infer, TICKS_MODEL, inputs)
    assert e.message() == "inputs[2].datatype: 'FP32' for 'last_price', expected FP64"

    extra = triton_inputs(columns) + triton_inputs({"features": np.zeros(10)})
    e = _error(triton.infer, TICKS_MODEL, extra)
    assert e.message().startswith("inputs[10].name: 'features' is not a tick input")

    e = _error(triton.infer, TICKS_MODEL, triton_inputs(columns), outputs=[tritongrpc.InferRequestedOutput("nope")])
    assert e.message().startswith("outputs[0].name: 'nope' is not an output")


def test_unknown_models_versions_and_too_many_ticks(triton):
    columns = tick_columns(frame_to_protos(simulate(5, seed=47)))
    e = _error(triton.infer, "no-such-model.ticks", triton_inputs(columns))
    assert e.status() == "StatusCode.NOT_FOUND" and e.message() == "model_name: no model named 'no-such-model'"
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(columns), model_version="99")
    assert e.status() == "StatusCode.NOT_FOUND" and e.message().startswith("model_version: ")
    e = _error(triton.get_model_metadata, "broken.ticks")
    assert e.status() == "StatusCode.FAILED_PRECONDITION"
    big = {k: np.repeat(v, 2001, axis=0)[:10_001] for k, v in columns.items()}
    e = _error(triton.infer, TICKS_MODEL, triton_inputs(big))
    assert e.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert e.message() == "inputs[0].shape: [10001] is 10001 ticks in one request, the limit is 10000"
