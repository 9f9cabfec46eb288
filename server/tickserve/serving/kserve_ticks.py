"""The tick-input view of each served model over V2: `<model>.ticks`, ticks in, signals out.

A V2 client (tritonclient, MLServer's and KServe's clients) cannot call SignalService, and
without this it would have to re-implement the feature stage to use a model. So every served
model M also answers, under the V2 name `M.ticks`, to tensors that are the columns of a
TickColumns message (protos/tickserve/v1/tickserve.proto):

    instrument    BYTES  [n]          UTF-8 instrument name per tick
    timestamp_ns  INT64  [n]
    last_price    FP64   [n]          0 = no trade
    last_size     FP64   [n]
    bid_price     FP64   [n, levels]  row-major, NaN price and size = absent level
    bid_size, ask_price, ask_size     as bid_price, the same levels
    sequence      UINT64 or INT64 [n] optional
    aggressor     INT8/INT32/INT64 [n] optional, the Side numbers (0 unknown, 1 buy, 2 sell)

and returns the signal columns (probabilities, action, strength, urgency, risk, confidence,
edge_score, warmed_up, sequence_gap). This module only converts at the edge: tensors -> a
TickBlock, ColumnResults -> tensors. The signals come from SignalService's own route
(`SignalServicer.predict_block` -> `routes.predict_block` -> `columnar.process_columns`), with
Predict's semantics: a self-contained batch (rolling features see only this request's ticks),
and the first rejected tick fails the call, named by input and row (`bid_price[3, 0]: ...`).

A model actually named `X.ticks` is served as itself; the suffix means the tick view only when
no model has the full name.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickserve_proto.inference import grpc_service_pb2 as oip

from ..core.columnar import ColumnResults, TickBlock
from ..core.session import Rejection
from ..core.signals import ACTIONS, CLASSES, RISKS, STRENGTHS, URGENCIES
from ..errors import InvalidArgument, ResourceExhausted, TickserveError
from ..models.repository import LoadedModel
from . import kserve_converters as conv
from .tick_input import aggressors_from_proto

TICKS_SUFFIX = ".ticks"


@dataclass(frozen=True)
class TickInput:
    name: str
    datatypes: tuple[str, ...]  # accepted V2 datatypes, the first one advertised in metadata
    book: bool = False  # [n, levels] rather than [n]
    optional: bool = False


_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")
TICK_INPUTS: tuple[TickInput, ...] = (
    TickInput("instrument", ("BYTES",)),
    TickInput("timestamp_ns", ("INT64",)),
    TickInput("last_price", ("FP64",)),
    TickInput("last_size", ("FP64",)),
    *(TickInput(name, ("FP64",), book=True) for name in _BOOK),
    TickInput("sequence", ("UINT64", "INT64"), optional=True),
    TickInput("aggressor", ("INT32", "INT8", "INT64"), optional=True),
)
_BY_NAME = {spec.name: spec for spec in TICK_INPUTS}
TICK_OUTPUTS = (
    conv.PROBABILITIES_OUTPUT,
    conv.ACTION_OUTPUT,
    "strength",
    "urgency",
    "risk",
    "confidence",
    "edge_score",
    "warmed_up",
    "sequence_gap",
)
_OUTPUT_TYPES = {"confidence": "FP64", "edge_score": "FP64", "warmed_up": "BOOL", "sequence_gap": "UINT64"}
_LABELS = {conv.ACTION_OUTPUT: ACTIONS, "strength": STRENGTHS, "urgency": URGENCIES, "risk": RISKS}

# numeric V2 datatype -> (little-endian dtype of its raw form, its typed-contents field)
_NUMERIC = {
    "FP64": (np.dtype("<f8"), "fp64_contents"),
    "INT64": (np.dtype("<i8"), "int64_contents"),
    "UINT64": (np.dtype("<u8"), "uint64_contents"),
    "INT32": (np.dtype("<i4"), "int_contents"),
    "INT8": (np.dtype("<i1"), "int_contents"),
}


def tick_view(name: str, model_names: set[str]) -> str:
    """The served model behind a V2 name when it names a tick view (`M.ticks` and no model is
    called that), else ""."""
    if name.endswith(TICKS_SUFFIX) and len(name) > len(TICKS_SUFFIX) and name not in model_names:
        return name[: -len(TICKS_SUFFIX)]
    return ""


def metadata(model: LoadedModel, v2_name: str, versions: list[str]) -> oip.ModelMetadataResponse:
    tensor = oip.ModelMetadataResponse.TensorMetadata
    classes = list(model.manifest.classes)
    outputs = [tensor(name=conv.PROBABILITIES_OUTPUT, datatype="FP64", shape=[-1, len(classes)])]
    outputs += [tensor(name=name, datatype=_OUTPUT_TYPES.get(name, "BYTES"), shape=[-1]) for name in TICK_OUTPUTS[1:]]
    return oip.ModelMetadataResponse(
        name=v2_name,
        versions=versions or [model.version],
        platform=f"tickserve_{model.manifest.adapter}",
        inputs=[tensor(name=s.name, datatype=s.datatypes[0], shape=[-1, -1] if s.book else [-1]) for s in TICK_INPUTS],
        outputs=outputs,
        properties={
            "version": model.version,
            "model": model.name,
            "classes": ",".join(classes),
            "optional_inputs": ",".join(s.name for s in TICK_INPUTS if s.optional),
            "book": "bid/ask price and size [n, levels], the same levels each, NaN price and size = absent level",
            "aggressor": "Side numbers: 0 unknown or no trade, 1 a buyer lifted the ask, 2 a seller hit the bid",
            "batch": "self-contained, as SignalService.Predict: rolling features see only this request's ticks",
            "feature_names": ",".join(model.manifest.feature_names),
        },
    )


# --- tensors -> TickBlock -------------------------------------------------------------------


def block_from_request(request: Any, max_rows: int) -> TickBlock:
    """The request's tick columns as a TickBlock. Names, datatypes, shapes and byte counts are
    checked before anything is decoded; each failure names the input and the value."""
    raw = conv.uses_raw_inputs(request)
    if raw and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents: {len(request.raw_input_contents)} entries for {len(request.inputs)} input(s); "
            "send one entry per input, in the order of inputs, or none",
            field="raw_input_contents",
        )
    where: dict[str, int] = {}
    rows = levels = None
    for i, tensor in enumerate(request.inputs):
        spec = _BY_NAME.get(tensor.name)
        if spec is None:
            raise InvalidArgument(
                f"inputs[{i}].name: {conv.shown(tensor.name)} is not a tick input "
                f"(inputs: {', '.join(s.name for s in TICK_INPUTS)})",
                field=f"inputs[{i}].name",
            )
        if tensor.name in where:
            raise InvalidArgument(
                f"inputs[{i}].name: {tensor.name!r} appears twice (also inputs[{where[tensor.name]}])",
                field=f"inputs[{i}].name",
            )
        where[tensor.name] = i
        conv.no_shared_memory(tensor.parameters, f"inputs[{i}]")
        if tensor.datatype not in spec.datatypes:
            raise InvalidArgument(
                f"inputs[{i}].datatype: {conv.shown(tensor.datatype)} for {spec.name!r}, expected "
                f"{' or '.join(spec.datatypes)}",
                field=f"inputs[{i}].datatype",
            )
        shape = list(tensor.shape)
        expected = "[n, levels]" if spec.book else "[n]"
        if len(shape) != (2 if spec.book else 1) or min(shape) < (1 if spec.book else 0):
            raise InvalidArgument(
                f"inputs[{i}].shape: {conv.shape_text(shape)} for {spec.name!r}, expected {expected}",
                field=f"inputs[{i}].shape",
            )
        if rows is None:
            if shape[0] < 1:
                raise InvalidArgument(
                    f"inputs[{i}].shape: {conv.shape_text(shape)} has no ticks; send at least one",
                    field=f"inputs[{i}].shape",
                )
            if shape[0] > max_rows:
                raise ResourceExhausted(
                    f"inputs[{i}].shape: {conv.shape_text(shape)} is {shape[0]} ticks in one request, "
                    f"the limit is {max_rows}",
                    field=f"inputs[{i}].shape",
                )
            rows, first = shape[0], i
        elif shape[0] != rows:
            raise InvalidArgument(
                f"inputs[{i}].shape: {conv.shape_text(shape)} for {spec.name!r} has {shape[0]} ticks but "
                f"inputs[{first}] ({request.inputs[first].name!r}) has {rows}",
                field=f"inputs[{i}].shape",
            )
        if spec.book:
            if levels is None:
                levels, book_first = shape[1], i
            elif shape[1] != levels:
                raise InvalidArgument(
                    f"inputs[{i}].shape: {conv.shape_text(shape)} for {spec.name!r} has {shape[1]} levels but "
                    f"inputs[{book_first}] ({request.inputs[book_first].name!r}) has {levels}; "
                    "every side has the same levels (NaN price and size = absent)",
                    field=f"inputs[{i}].shape",
                )
    missing = [s.name for s in TICK_INPUTS if not s.optional and s.name not in where]
    if missing:
        raise InvalidArgument(
            f"inputs: missing {', '.join(missing)} (a tick model takes "
            f"{', '.join(s.name for s in TICK_INPUTS if not s.optional)}; sequence and aggressor are optional)",
            field="inputs",
        )

    def get(name: str) -> np.ndarray:
        i = where[name]
        count = rows * (levels if _BY_NAME[name].book else 1)
        return _decode(request, i, count, raw)

    def book(name: str) -> np.ndarray:
        return get(name).astype(np.float64).reshape(rows, levels)  # a copy: writable, native order

    instruments = _instruments(get("instrument"))
    names, index = np.unique(np.asarray(instruments, dtype=object), return_inverse=True)
    return TickBlock(
        names=names.tolist(),
        index=index.ravel().astype(np.intp),
        timestamp_ns=get("timestamp_ns").astype(np.int64),
        last_price=get("last_price").astype(np.float64),
        last_size=get("last_size").astype(np.float64),
        bid_price=book("bid_price"),
        bid_size=book("bid_size"),
        ask_price=book("ask_price"),
        ask_size=book("ask_size"),
        sequence=_sequence(get("sequence")) if "sequence" in where else None,
        aggressor=aggressors_from_proto(get("aggressor")) if "aggressor" in where else None,
    )


def _decode(request: Any, i: int, count: int, raw: bool) -> np.ndarray:
    """Input i as `count` values: numbers in their datatype, or a list of bytes for BYTES."""
    tensor = request.inputs[i]
    what = f"input {tensor.name!r} {tensor.datatype} {conv.shape_text(tensor.shape)}"
    if tensor.datatype == "BYTES":
        values = _raw_bytes(request.raw_input_contents[i], i) if raw else list(tensor.contents.bytes_contents)
        if len(values) != count:
            field = f"raw_input_contents[{i}]" if raw else f"inputs[{i}].contents.bytes_contents"
            raise InvalidArgument(f"{field}: {len(values)} elements for {what}, expected {count}", field=field)
        return np.array(values, dtype=object)
    dtype, contents = _NUMERIC[tensor.datatype]
    if raw:
        data = request.raw_input_contents[i]
        if len(data) != count * dtype.itemsize:
            raise InvalidArgument(
                f"raw_input_contents[{i}]: {len(data)} bytes for {what}, expected {count * dtype.itemsize} "
                f"({count} x {dtype.itemsize})",
                field=f"raw_input_contents[{i}]",
            )
        return np.frombuffer(data, dtype=dtype)
    values = getattr(tensor.contents, contents)
    if len(values) != count:
        field = f"inputs[{i}].contents.{contents}"
        raise InvalidArgument(f"{field}: {len(values)} values for {what}, expected {count}", field=field)
    return np.array(values, dtype=dtype)


def _raw_bytes(data: bytes, i: int) -> list[bytes]:
    """Triton's raw BYTES: per element a 4-byte little-endian length, then that many bytes."""
    out, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise InvalidArgument(
                f"raw_input_contents[{i}]: {len(data) - at} stray byte(s) at offset {at}, expected a 4-byte length",
                field=f"raw_input_contents[{i}]",
            )
        (size,) = struct.unpack_from("<I", data, at)
        if at + 4 + size > len(data):
            raise InvalidArgument(
                f"raw_input_contents[{i}]: element {len(out)} claims {size} bytes at offset {at}, "
                f"only {len(data) - at - 4} remain",
                field=f"raw_input_contents[{i}]",
            )
        out.append(bytes(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return out


def _instruments(values: np.ndarray) -> list[str]:
    out = []
    for r, value in enumerate(values.tolist()):
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            shown = value[:64]
            raise InvalidArgument(f"instrument[{r}]: not UTF-8, got {shown!r}", field=f"instrument[{r}]") from None
    return out


def _sequence(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "i" and len(values) and int(values.min()) < 0:
        r = int(np.flatnonzero(values < 0)[0])
        raise InvalidArgument(f"sequence[{r}]: must be >= 0, got {int(values[r])}", field=f"sequence[{r}]")
    return values.astype(np.uint64)


_FIELD = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?$")


def rejected(row: int, rejection: Rejection) -> TickserveError:
    """A rejected tick as the call's error, in V2 terms: `bid_price[3, 0]: <why, with the value>`."""
    match = _FIELD.match(rejection.field)
    message = rejection.message
    if match and match.group(1) in _BY_NAME and message.startswith(f"{rejection.field}: "):
        name, level = match.groups()
        where = f"{name}[{row}, {level}]" if level is not None else f"{name}[{row}]"
        message = f"{where}: {message[len(rejection.field) + 2 :]} (tick {row})"
    else:
        where = f"tick[{row}]"
        message = f"{where}: {message}"
    error = TickserveError(message, field=where)
    error.status = rejection.status
    return error


# --- ColumnResults -> tensors ---------------------------------------------------------------


def output_tensors(specs: list[conv.OutputSpec], results: ColumnResults) -> list[conv.OutputTensor]:
    """The requested signal columns; every row got a signal (a rejection fails the call first)."""
    signal = results.signal
    out = []
    for spec in specs:
        name = spec.name
        if name == conv.PROBABILITIES_OUTPUT and spec.top_k:
            values = conv.classification_strings(results.probs, CLASSES, spec.top_k)
        elif name == conv.PROBABILITIES_OUTPUT:
            out.append(conv.OutputTensor(name, "FP64", results.probs.shape, results.probs))
            continue
        elif name in _LABELS:
            labels = np.array([label.encode() for label in _LABELS[name]], dtype=object)
            values = labels[getattr(signal, name)]
        else:
            values = {
                "confidence": signal.confidence,
                "edge_score": signal.edge_score,
                "warmed_up": results.warmed,
                "sequence_gap": results.gaps,
            }[name]
            out.append(conv.OutputTensor(name, _OUTPUT_TYPES[name], values.shape, values))
            continue
        out.append(conv.OutputTensor(name, "BYTES", values.shape, values))
    return out
