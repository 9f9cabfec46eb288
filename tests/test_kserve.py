"""Open Inference Protocol (KServe V2) over gRPC, driven by the published client (tritonclient.grpc).

Feature rows come from tickserve's own feature stage on simulated ticks; what the server returns
must be exactly what `LoadedModel.predict` gives for the same rows.
"""

from __future__ import annotations

import numpy as np
import pytest

tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tickserve import __version__  # noqa: E402
from tickserve.core.signals import predicted_class  # noqa: E402
from tickserve.features import batch_features  # noqa: E402
from tickserve.simulate import simulate  # noqa: E402
from tickserve_proto.inference import grpc_service_pb2 as oip  # noqa: E402
from tickserve_proto.inference import grpc_service_pb2_grpc as oip_grpc  # noqa: E402

from .conftest import MODEL  # noqa: E402


@pytest.fixture(scope="module")
def triton(server):
    client = tritongrpc.InferenceServerClient(server.address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def model(server):
    return server.repository.get(MODEL)  # the newest READY version, what a request without a version gets


@pytest.fixture(scope="module")
def rows(model) -> np.ndarray:
    """Real feature rows (past warm-up) in the model's column order, float64."""
    frame = simulate(900, seed=21)
    x = batch_features(frame, model.manifest.feature_config)[:, model.feature_index]
    return np.ascontiguousarray(x[200:212])


@pytest.fixture
def stub(channel):
    return oip_grpc.GRPCInferenceServiceStub(channel)


def _infer(triton, x: np.ndarray, datatype: str, *, model=MODEL, outputs=None, **kwargs):
    tensor = tritongrpc.InferInput("features", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return triton.infer(model, [tensor], outputs=outputs, **kwargs)


def _error(fn, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    return info.value


# --- health and metadata ---------------------------------------------------------------------


def test_server_live_and_ready(triton):
    assert triton.is_server_live() is True
    assert triton.is_server_ready() is True


def test_model_ready(triton):
    assert triton.is_model_ready(MODEL) is True
    assert triton.is_model_ready(MODEL, "1") is True
    assert triton.is_model_ready("broken") is False  # FAILED at load time
    assert triton.is_model_ready("no-such-model") is False
    assert triton.is_model_ready(MODEL, "99") is False


def test_server_metadata(triton):
    meta = triton.get_server_metadata()
    assert meta.name == "tickserve"
    assert meta.version == __version__
    assert list(meta.extensions) == ["classification"]


def test_model_metadata(triton, model):
    meta = triton.get_model_metadata(MODEL)
    names = list(model.manifest.feature_names)
    assert meta.name == MODEL
    assert list(meta.versions) == ["1", "2"]
    assert meta.platform == "tickserve_lightgbm"
    # one input per feature, in the model's order: what tritonclient can read (its message has no properties)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [(name, "FP64", [-1]) for name in names]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP64", [-1, 3]),
        ("action", "BYTES", [-1]),
    ]
    # tritonclient's (Triton) message has no `properties`; the Open Inference Protocol's has: same bytes on the wire
    props = oip.ModelMetadataResponse.FromString(meta.SerializeToString()).properties
    assert props["feature_names"].split(",") == names
    assert props["classes"] == "SELL,HOLD,BUY"
    assert props["version"] == model.version


def test_a_tritonclient_user_reads_the_feature_order_and_infers_with_it(triton, model, rows):
    """Only tritonclient: the metadata's input names are the feature order; sending one input per
    name (a data frame column by column) or one [n, F] tensor in that order gives the model's bits."""
    meta = triton.get_model_metadata(MODEL)
    order = [t.name for t in meta.inputs]
    assert order == list(model.manifest.feature_names)
    columns = []
    for j, name in reversed(list(enumerate(order))):  # any order of inputs; the names place them
        tensor = tritongrpc.InferInput(name, [len(rows)], meta.inputs[j].datatype)
        tensor.set_data_from_numpy(np.ascontiguousarray(rows[:, j]))
        columns.append(tensor)
    by_name = triton.infer(MODEL, columns).as_numpy("probabilities")
    one_tensor = _infer(triton, rows, "FP64").as_numpy("probabilities")
    expected = model.predict(rows)[1]
    assert by_name.tobytes() == one_tensor.tobytes() == np.ascontiguousarray(expected).tobytes()


def test_model_metadata_of_a_pinned_version(stub):
    meta = stub.ModelMetadata(oip.ModelMetadataRequest(name=MODEL, version="1"))
    assert meta.properties["version"] == "1"
    assert list(meta.versions) == ["1", "2"]


def test_model_metadata_errors(triton):
    e = _error(triton.get_model_metadata, "no-such-model")
    assert e.status() == "StatusCode.NOT_FOUND"
    assert e.message() == "name: no model named 'no-such-model'"
    e = _error(triton.get_model_metadata, "broken")
    assert e.status() == "StatusCode.FAILED_PRECONDITION"
    assert "'broken' version '1' is FAILED" in e.message()
    e = _error(triton.get_model_metadata, MODEL, "99")
    assert e.status() == "StatusCode.NOT_FOUND"
    assert e.message() == f"version: model {MODEL!r} has no version '99' (has: 1, 2)"


# --- inference -------------------------------------------------------------------------------


def test_infer_fp64_is_bit_equal_to_the_model(triton, model, rows):
    result = _infer(triton, rows, "FP64", request_id="req-7")  # 12 rows: predicted in a worker thread
    _, expected = model.predict(rows)
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float64 and probs.shape == (len(rows), 3)
    assert np.array_equal(probs, expected)
    classes = np.array(model.manifest.classes, dtype=object)
    assert result.as_numpy("action").tolist() == [c.encode() for c in classes[predicted_class(expected)]]
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, model.version, "req-7")


def test_infer_fp32_predicts_the_float32_rounded_rows(triton, model, rows):
    x32 = rows.astype(np.float32)
    probs = _infer(triton, x32, "FP32").as_numpy("probabilities")
    _, expected = model.predict(x32.astype(np.float64))
    assert np.array_equal(probs, expected)


def test_infer_a_few_rows_on_the_event_loop_and_a_pinned_version(triton, server, rows):
    v1 = server.repository.get(MODEL, "1")
    x = rows[:3]
    result = _infer(triton, x, "FP64", model_version="1")
    assert result.get_response().model_version == "1"
    assert np.array_equal(result.as_numpy("probabilities"), v1.predict(x)[1])


def test_requested_outputs_and_classification(triton, model, rows):
    x = rows[:5]
    _, expected = model.predict(x)
    outputs = [tritongrpc.InferRequestedOutput("probabilities", class_count=2)]
    result = _infer(triton, x, "FP64", outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    top2 = result.as_numpy("probabilities")
    assert top2.shape == (5, 2)
    for row, strings in zip(expected, top2):
        (v1, i1, l1), (v2, i2, l2) = (s.decode().split(":") for s in strings)
        assert (float(v1), float(v2)) == (row.max(), np.sort(row)[-2])  # value round-trips exactly
        assert model.manifest.classes[int(i1)] == l1 and row[int(i1)] == row.max()
    only_action = _infer(triton, x, "FP64", outputs=[tritongrpc.InferRequestedOutput("action")])
    assert [o.name for o in only_action.get_response().outputs] == ["action"]


def test_one_input_per_feature_in_any_order(triton, model, rows):
    names = list(model.manifest.feature_names)
    inputs = []
    for j in reversed(range(len(names))):  # order of the inputs does not matter, their names do
        column = rows[:, j : j + 1]
        tensor = tritongrpc.InferInput(names[j], list(column.shape), "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(column))
        inputs.append(tensor)
    probs = triton.infer(MODEL, inputs).as_numpy("probabilities")
    assert np.array_equal(probs, model.predict(rows)[1])


def test_typed_contents_in_typed_contents_out(stub, model, rows):
    """A client that sends fp64_contents (grpcurl, JSON) gets typed contents back, not raw bytes."""
    x = rows[:6]
    request = oip.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="features", datatype="FP64", shape=list(x.shape))
    tensor.contents.fp64_contents.extend(x.ravel().tolist())
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 0
    probs, action = response.outputs
    assert (probs.name, list(probs.shape), action.name) == ("probabilities", [6, 3], "action")
    assert np.array_equal(np.array(probs.contents.fp64_contents).reshape(6, 3), model.predict(x)[1])
    assert len(action.contents.bytes_contents) == 6


def test_reflection_describes_the_v2_service(channel):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    db = ProtoReflectionDescriptorDatabase(channel)
    assert "inference.GRPCInferenceService" in db.get_services()
    file = db.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert "ModelInfer" in [m.name for m in file.service[0].method]


# --- errors ----------------------------------------------------------------------------------


def test_wrong_shape(triton, model, rows):
    n = len(model.manifest.feature_names)
    e = _error(_infer, triton, rows[:, :-1], "FP64")
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message().startswith(f"inputs[0].shape: [12, {n - 1}] for 'features', expected [n, {n}]")
    e = _error(_infer, triton, rows.ravel(), "FP64")
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message().startswith(f"inputs[0].shape: [{rows.size}] for 'features', expected [n, {n}]")


def test_wrong_datatype(triton, rows):
    e = _error(_infer, triton, rows.astype(np.int64), "INT64")
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message() == "inputs[0].datatype: 'INT64' for input 'features' is not supported; send FP32 or FP64"


def test_unknown_and_failed_models(triton, rows):
    e = _error(_infer, triton, rows, "FP64", model="no-such-model")
    assert e.status() == "StatusCode.NOT_FOUND"
    assert e.message() == "model_name: no model named 'no-such-model'"
    e = _error(_infer, triton, rows, "FP64", model="broken")
    assert e.status() == "StatusCode.FAILED_PRECONDITION"
    assert e.message().startswith("model_name: ") and "'broken' version '1' is FAILED" in e.message()
    e = _error(_infer, triton, rows, "FP64", model_version="99")
    assert e.status() == "StatusCode.NOT_FOUND"
    assert e.message().startswith("model_version: model 'signal-lgbm' has no version '99'")


def test_non_finite_rows(triton, model, rows):
    x = rows.copy()
    x[4, 2] = np.nan
    x[7, 0] = np.inf
    e = _error(_infer, triton, x, "FP64")
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    feature = model.manifest.feature_names[2]
    assert e.message() == (
        f"inputs: features[4, 2] is nan (row 4, feature {feature!r}); every feature value must be finite, "
        "2 row(s) are not"
    )


def test_element_and_byte_counts(stub, rows):
    x = rows[:2]
    request = oip.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="features", datatype="FP64", shape=list(x.shape))
    tensor.contents.fp64_contents.extend(x.ravel()[:-1].tolist())
    code, message = _rpc_error(stub.ModelInfer, request)
    assert code.name == "INVALID_ARGUMENT"
    assert message == (
        f"inputs[0].contents.fp64_contents: {x.size - 1} values for input 'features' [2, {x.shape[1]}], expected {x.size}"
    )

    request = oip.ModelInferRequest(model_name=MODEL, raw_input_contents=[x.tobytes()[:-8]])
    request.inputs.add(name="features", datatype="FP64", shape=list(x.shape))
    code, message = _rpc_error(stub.ModelInfer, request)
    assert code.name == "INVALID_ARGUMENT"
    assert message.startswith(
        f"raw_input_contents[0]: {x.nbytes - 8} bytes for input 'features' FP64 [2, {x.shape[1]}],"
    )


def test_bad_inputs_and_outputs(triton, model, rows):
    bogus = tritongrpc.InferInput("bogus", [3, 1], "FP64")
    bogus.set_data_from_numpy(rows[:3, :1].copy())
    e = _error(triton.infer, MODEL, [bogus])
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message().startswith("inputs[0].name: 'bogus' is neither 'features' nor one of the model's")
    e = _error(_infer, triton, rows, "FP64", outputs=[tritongrpc.InferRequestedOutput("logits")])
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message() == "outputs[0].name: 'logits' is not an output (outputs: probabilities, action)"
    names = model.manifest.feature_names
    first = tritongrpc.InferInput(names[0], [3], "FP64")
    first.set_data_from_numpy(np.ascontiguousarray(rows[:3, 0]))
    e = _error(triton.infer, MODEL, [first])
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert e.message().startswith(f"inputs: {len(names) - 1} of the model's {len(names)} features missing: {names[1]}")


def test_too_many_rows(triton, rows):
    x = np.zeros((10_001, rows.shape[1]), dtype=np.float32)
    e = _error(_infer, triton, x, "FP32")
    assert e.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert e.message() == f"inputs[0].shape: [10001, {rows.shape[1]}] is 10001 rows in one request, the limit is 10000"


def _rpc_error(call, request):
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code(), info.value.details()
