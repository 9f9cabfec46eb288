"""Open Inference Protocol (KServe V2) tensors <-> numpy, at the edge. No model code in here.

Inputs (see docs/kserve.md): one tensor "features", FP32 or FP64, shape [n, n_features], the
columns in the model's feature order; or one tensor per feature, named by the feature, shape
[n] or [n, 1] (a data frame sent column by column, as MLServer's pandas codec does). Values come
from `contents.fp32_contents` / `contents.fp64_contents` or from `raw_input_contents`
(little-endian, row-major, as tritonclient sends them). Every failure is an `InvalidArgument`
(or `ResourceExhausted` for too many rows) naming the request field and the value.

Outputs: "probabilities" FP64 [n, len(classes)] and "action" BYTES [n]. They are returned as
`raw_output_contents` when the request sent raw inputs (tritonclient reads only raw numeric
outputs) and as typed `contents` when it sent typed ones (readable in grpcurl's JSON).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument, ResourceExhausted

FEATURES_INPUT = "features"
PROBABILITIES_OUTPUT = "probabilities"
ACTION_OUTPUT = "action"
OUTPUTS = (PROBABILITIES_OUTPUT, ACTION_OUTPUT)

# V2 datatype -> (little-endian numpy dtype, the typed-contents field that carries it)
INPUT_DATATYPES: dict[str, tuple[np.dtype, str]] = {
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "FP64": (np.dtype("<f8"), "fp64_contents"),
}
_CONTENT_FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
CLASSIFICATION = "classification"  # Triton's classification extension: top-k "value:index:label" strings


def shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shown(name: str) -> str:
    return repr(name) if len(name) <= 64 else f"{name[:64]!r}... ({len(name)} characters)"


def no_shared_memory(parameters, where: str) -> None:
    for key in _SHARED_MEMORY:
        if key in parameters:
            raise InvalidArgument(
                f"{where}.parameters.{key}: shared memory is not supported, send the tensor in the request",
                field=f"{where}.parameters.{key}",
            )


# --- inputs ---------------------------------------------------------------------------------


def uses_raw_inputs(request: Any) -> bool:
    return len(request.raw_input_contents) > 0


def row_count_hint(request: Any) -> int:
    """Rows the request claims (first input's first dimension), to decide where to run it; 0 if unknown."""
    if request.inputs and request.inputs[0].shape:
        return max(0, int(request.inputs[0].shape[0]))
    return 0


def features_matrix(request: Any, feature_names: tuple[str, ...] | list[str], max_rows: int) -> np.ndarray:
    """The (n, len(feature_names)) float64 matrix of a ModelInferRequest, in the model's feature order.

    Shapes, datatypes and sizes are checked before anything is decoded, so a request that claims
    a huge tensor is refused without allocating it. Rows with a NaN or infinite value are refused.
    """
    names = list(feature_names)
    n_features = len(names)
    inputs = request.inputs
    if not inputs:
        raise InvalidArgument(
            f"inputs: the request has no input tensor; send {FEATURES_INPUT!r} FP32/FP64 [n, {n_features}] "
            "or one [n] input per feature name",
            field="inputs",
        )
    raw = uses_raw_inputs(request)
    if raw and len(request.raw_input_contents) != len(inputs):
        raise InvalidArgument(
            f"raw_input_contents: {len(request.raw_input_contents)} entries for {len(inputs)} input(s); "
            "send one entry per input, in the order of inputs, or none",
            field="raw_input_contents",
        )
    seen: dict[str, int] = {}
    for i, tensor in enumerate(inputs):
        if tensor.name in seen:
            raise InvalidArgument(
                f"inputs[{i}].name: {shown(tensor.name)} appears twice (also inputs[{seen[tensor.name]}])",
                field=f"inputs[{i}].name",
            )
        seen[tensor.name] = i
        _check_datatype(tensor, i)
        no_shared_memory(tensor.parameters, f"inputs[{i}]")
        if raw and tensor.HasField("contents") and _typed_count(tensor.contents):
            raise InvalidArgument(
                f"inputs[{i}].contents: set while raw_input_contents is used; send each tensor one way only",
                field=f"inputs[{i}].contents",
            )

    layout_features = FEATURES_INPUT in seen and FEATURES_INPUT not in names
    if layout_features:
        if len(inputs) > 1:
            other = next(i for i, t in enumerate(inputs) if t.name != FEATURES_INPUT)
            raise InvalidArgument(
                f"inputs[{other}].name: {shown(inputs[other].name)} sent beside {FEATURES_INPUT!r}; "
                f"send either {FEATURES_INPUT!r} [n, {n_features}] alone or one input per feature",
                field=f"inputs[{other}].name",
            )
        x = _features_tensor(request, 0, n_features, max_rows)
    else:
        x = _feature_columns(request, names, max_rows)
    _check_finite(x, names, layout_features)
    return x


def _check_datatype(tensor: Any, i: int) -> None:
    if tensor.datatype not in INPUT_DATATYPES:
        raise InvalidArgument(
            f"inputs[{i}].datatype: {shown(tensor.datatype)} for input {shown(tensor.name)} is not supported; "
            f"send {' or '.join(INPUT_DATATYPES)}",
            field=f"inputs[{i}].datatype",
        )


def _check_rows(rows: int, i: int, shape, max_rows: int) -> None:
    if rows < 1:
        raise InvalidArgument(
            f"inputs[{i}].shape: {shape_text(shape)} has no rows; send at least one", field=f"inputs[{i}].shape"
        )
    if rows > max_rows:
        raise ResourceExhausted(
            f"inputs[{i}].shape: {shape_text(shape)} is {rows} rows in one request, the limit is {max_rows}",
            field=f"inputs[{i}].shape",
        )


def _features_tensor(request: Any, i: int, n_features: int, max_rows: int) -> np.ndarray:
    tensor = request.inputs[i]
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != n_features or shape[0] < 0:
        raise InvalidArgument(
            f"inputs[{i}].shape: {shape_text(shape)} for {FEATURES_INPUT!r}, expected [n, {n_features}] "
            f"(n rows of the model's {n_features} features, in the order of ModelMetadata's feature_names)",
            field=f"inputs[{i}].shape",
        )
    _check_rows(shape[0], i, shape, max_rows)
    return _decode(request, i, shape[0] * n_features).reshape(shape[0], n_features)


def _feature_columns(request: Any, names: list[str], max_rows: int) -> np.ndarray:
    """One input per feature name, each [n] or [n, 1]: stacked into the model's column order."""
    position = {name: j for j, name in enumerate(names)}
    rows = None
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in position:
            raise InvalidArgument(
                f"inputs[{i}].name: {shown(tensor.name)} is neither {FEATURES_INPUT!r} nor one of the model's "
                f"{len(names)} feature names (ModelMetadata properties['feature_names'])",
                field=f"inputs[{i}].name",
            )
        shape = list(tensor.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise InvalidArgument(
                f"inputs[{i}].shape: {shape_text(shape)} for feature {shown(tensor.name)}, expected [n] or [n, 1]",
                field=f"inputs[{i}].shape",
            )
        if rows is None:
            _check_rows(shape[0], i, shape, max_rows)
            rows, first = shape[0], i
        elif shape[0] != rows:
            raise InvalidArgument(
                f"inputs[{i}].shape: {shape_text(shape)} has {shape[0]} rows but inputs[{first}] "
                f"({shown(request.inputs[first].name)}) has {rows}",
                field=f"inputs[{i}].shape",
            )
    missing = [name for name in names if name not in {t.name for t in request.inputs}]
    if missing:
        listed = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise InvalidArgument(
            f"inputs: {len(missing)} of the model's {len(names)} features missing: {listed}; send {FEATURES_INPUT!r} "
            f"[n, {len(names)}] or one input per feature",
            field="inputs",
        )
    x = np.empty((rows, len(names)), dtype=np.float64)
    for i, tensor in enumerate(request.inputs):
        x[:, position[tensor.name]] = _decode(request, i, rows)
    return x


def _typed_count(contents: Any) -> int:
    return sum(len(getattr(contents, f)) for f in _CONTENT_FIELDS)


def _decode(request: Any, i: int, count: int) -> np.ndarray:
    """Input i as `count` float64 values, from raw bytes or its typed contents field."""
    tensor = request.inputs[i]
    dtype, field = INPUT_DATATYPES[tensor.datatype]
    if uses_raw_inputs(request):
        data = request.raw_input_contents[i]
        if len(data) != count * dtype.itemsize:
            raise InvalidArgument(
                f"raw_input_contents[{i}]: {len(data)} bytes for input {shown(tensor.name)} {tensor.datatype} "
                f"{shape_text(tensor.shape)}, expected {count * dtype.itemsize} ({count} x {dtype.itemsize})",
                field=f"raw_input_contents[{i}]",
            )
        return np.frombuffer(data, dtype=dtype).astype(np.float64)  # a copy: native order, writable
    values = getattr(tensor.contents, field)
    if len(values) != count:
        others = [f for f in _CONTENT_FIELDS if f != field and len(getattr(tensor.contents, f))]
        hint = f" (values were sent in {', '.join(others)}; {tensor.datatype} goes in {field})" if others else ""
        raise InvalidArgument(
            f"inputs[{i}].contents.{field}: {len(values)} values for input {shown(tensor.name)} "
            f"{shape_text(tensor.shape)}, expected {count}{hint}",
            field=f"inputs[{i}].contents.{field}",
        )
    return np.array(values, dtype=dtype).astype(np.float64)


def _check_finite(x: np.ndarray, names: list[str], layout_features: bool) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    row, col = (int(v) for v in np.argwhere(~finite)[0])
    bad_rows = int((~finite.all(axis=1)).sum())
    where = f"{FEATURES_INPUT}[{row}, {col}]" if layout_features else f"{names[col]}[{row}]"
    raise InvalidArgument(
        f"inputs: {where} is {x[row, col]} (row {row}, feature {names[col]!r}); every feature value must be "
        f"finite, {bad_rows} row(s) are not",
        field="inputs",
    )


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSpec:
    name: str
    top_k: int = 0  # > 0: Triton classification extension, BYTES "value:index:label", top k per row


def requested_outputs(request: Any, n_classes: int, outputs: tuple[str, ...] = OUTPUTS) -> list[OutputSpec]:
    """The outputs to return, in order: the requested ones, or all of `outputs` when none is named."""
    if not request.outputs:
        return [OutputSpec(name) for name in outputs]
    specs, seen = [], set()
    for i, out in enumerate(request.outputs):
        if out.name not in outputs:
            raise InvalidArgument(
                f"outputs[{i}].name: {shown(out.name)} is not an output (outputs: {', '.join(outputs)})",
                field=f"outputs[{i}].name",
            )
        if out.name in seen:
            raise InvalidArgument(f"outputs[{i}].name: {out.name!r} requested twice", field=f"outputs[{i}].name")
        seen.add(out.name)
        no_shared_memory(out.parameters, f"outputs[{i}]")
        top_k = 0
        if CLASSIFICATION in out.parameters:
            where = f"outputs[{i}].parameters.{CLASSIFICATION}"
            param = out.parameters[CLASSIFICATION]
            kind = param.WhichOneof("parameter_choice")
            if out.name != PROBABILITIES_OUTPUT:
                raise InvalidArgument(f"{where}: only {PROBABILITIES_OUTPUT!r} can be classified", field=where)
            if kind not in ("int64_param", "uint64_param") or not 1 <= getattr(param, kind) <= n_classes:
                value = getattr(param, kind) if kind else None
                raise InvalidArgument(f"{where}: {value!r}, expected an integer from 1 to {n_classes}", field=where)
            top_k = int(getattr(param, kind))
        specs.append(OutputSpec(out.name, top_k))
    return specs


def classification_strings(probs: np.ndarray, classes: tuple[str, ...] | list[str], k: int) -> np.ndarray:
    """Triton's classification format: per row the k most probable classes as b"value:index:label",
    most probable first (ties: lower index first); value is the float64 probability, round-trip exact."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    strings = [[f"{float(probs[r, c])!r}:{c}:{classes[c]}".encode() for c in row] for r, row in enumerate(order)]
    return np.array(strings, dtype=object)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str  # a key of _NUMERIC_OUTPUTS, or "BYTES"
    shape: tuple[int, ...]
    values: np.ndarray  # numbers, or an object array of bytes


# numeric output datatype -> (little-endian dtype of its raw form, its typed-contents field)
_NUMERIC_OUTPUTS: dict[str, tuple[str, str]] = {
    "FP64": ("<f8", "fp64_contents"),
    "UINT64": ("<u8", "uint64_contents"),
    "BOOL": ("?", "bool_contents"),  # raw: one byte per element, as Triton sends BOOL
}


def output_tensors(
    specs: list[OutputSpec], probs: np.ndarray, actions: np.ndarray, classes: tuple[str, ...] | list[str]
) -> list[OutputTensor]:
    out = []
    for spec in specs:
        if spec.name == PROBABILITIES_OUTPUT and spec.top_k:
            values = classification_strings(probs, classes, spec.top_k)
            out.append(OutputTensor(spec.name, "BYTES", values.shape, values))
        elif spec.name == PROBABILITIES_OUTPUT:
            out.append(OutputTensor(spec.name, "FP64", probs.shape, probs))
        else:
            values = np.array([classes[c].encode() for c in actions], dtype=object)
            out.append(OutputTensor(spec.name, "BYTES", values.shape, values))
    return out


def serialize_bytes(values: np.ndarray) -> bytes:
    """BYTES raw form (Triton / tritonclient): per element a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values.ravel())


def fill_response(response: Any, tensors: list[OutputTensor], raw: bool) -> None:
    """Add the tensors to a ModelInferResponse, as raw_output_contents (raw) or typed contents."""
    for t in tensors:
        out = response.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        if t.datatype in _NUMERIC_OUTPUTS:
            dtype, field = _NUMERIC_OUTPUTS[t.datatype]
            data = np.ascontiguousarray(t.values, dtype=dtype)
            if raw:
                response.raw_output_contents.append(data.tobytes())
            else:
                getattr(out.contents, field).extend(data.ravel().tolist())
        else:
            if raw:
                response.raw_output_contents.append(serialize_bytes(t.values))
            else:
                out.contents.bytes_contents.extend(t.values.ravel().tolist())
