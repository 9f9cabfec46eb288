"""The Open Inference Protocol's REST binding (KServe V2 REST) on the HTTP gateway.

Transport only: each route turns the JSON into the V2 gRPC request message, calls the same
method of `kserve.InferenceServicer` the gRPC handlers call, and writes the answer as V2 JSON.
The tick models (`<model>.ticks`) come with it.

    GET  /v2                                          -> server metadata
    GET  /v2/health/live, /v2/health/ready            -> 200, or 503 when no model is READY
    GET  /v2/models/{m}[/versions/{v}]                -> model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready          -> 200 {"name", "ready": true}, or 400 and false
    POST /v2/models/{m}[/versions/{v}]/infer          -> the inference response

Infer bodies: {"id", "parameters", "inputs": [{"name", "shape", "datatype", "data"}],
"outputs": [{"name", "parameters"}]}; "data" flat or nested (row-major), BYTES as strings.
Errors are the gateway's (one mapping, serving/status.py), with V2's shape on /v2 routes:
{"error": "<message>", "code": "<status>"}.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from aiohttp import web

from tickserve_proto.inference import grpc_service_pb2 as oip

from ..errors import InvalidArgument
from .kserve import InferenceServicer, server_metadata

# V2 datatype -> the typed-contents field its values go in
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
V2_HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")


def _json(payload: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


def _flat(data: Any, where: str) -> list:
    """Row-major values of a nested JSON array."""
    if not isinstance(data, list):
        raise InvalidArgument(f"{where}: expected a JSON array, got {type(data).__name__}", field=where)
    out: list = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested array is not a server fault
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _parameter(target: Any, key: str, value: Any, where: str) -> None:
    if isinstance(value, bool):
        target[key].bool_param = value
    elif isinstance(value, int):
        target[key].int64_param = value
    elif isinstance(value, float):
        target[key].double_param = value
    elif isinstance(value, str):
        target[key].string_param = value
    else:
        raise InvalidArgument(f"{where}.{key}: {value!r} is not a bool, number or string", field=f"{where}.{key}")


def _parameters(target: Any, value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: expected a JSON object, got {type(value).__name__}", field=where)
    for key, v in value.items():
        _parameter(target, key, v, where)


def _get(obj: dict, key: str, kind: type, where: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if not isinstance(value, kind):
        shown = "missing" if key not in obj else f"a {type(value).__name__}"
        raise InvalidArgument(f"{where}.{key}: expected a {kind.__name__}, got {shown}", field=f"{where}.{key}")
    return value


def infer_request(body: bytes, model: str, version: str) -> oip.ModelInferRequest:
    """A V2 REST infer body as the gRPC ModelInferRequest (typed contents), or INVALID_ARGUMENT naming the field."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise InvalidArgument("body: JSON nested too deeply", field="body") from None
    except ValueError as exc:
        raise InvalidArgument(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"body: expected a JSON object, got {type(data).__name__}", field="body")
    request = oip.ModelInferRequest(model_name=model, model_version=version, id=_get(data, "id", str, "body", ""))
    _parameters(request.parameters, data.get("parameters"), "parameters")
    for i, item in enumerate(_get(data, "inputs", list, "body")):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where}: expected a JSON object, got {type(item).__name__}", field=where)
        datatype = _get(item, "datatype", str, where)
        shape = _get(item, "shape", list, where)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"{where}.shape: {shape!r} is not a list of integers", field=f"{where}.shape")
        tensor = request.inputs.add(name=_get(item, "name", str, where), datatype=datatype, shape=shape)
        _parameters(tensor.parameters, item.get("parameters"), f"{where}.parameters")
        field = _CONTENTS.get(datatype)
        if field is None:
            raise InvalidArgument(f"{where}.datatype: {datatype!r} is not a V2 datatype", field=f"{where}.datatype")
        values = _flat(item.get("data"), f"{where}.data")
        if datatype == "BYTES":
            values = [v.encode() if isinstance(v, str) else v for v in values]
        try:
            getattr(tensor.contents, field).extend(values)
        except (TypeError, ValueError) as exc:  # e.g. a string among numbers: protobuf's words, named
            raise InvalidArgument(f"{where}.data: not all {datatype} values ({exc})", field=f"{where}.data") from None
    for i, item in enumerate(data.get("outputs") or []):
        where = f"outputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where}: expected a JSON object, got {type(item).__name__}", field=where)
        out = request.outputs.add(name=_get(item, "name", str, where))
        _parameters(out.parameters, item.get("parameters"), f"{where}.parameters")
    return request


def infer_json(response: oip.ModelInferResponse) -> bytes:
    """The V2 REST body of a ModelInferResponse that carries typed contents (REST inputs are typed)."""
    outputs = []
    for out in response.outputs:
        values = list(getattr(out.contents, _CONTENTS[out.datatype]))
        if out.datatype == "BYTES":
            values = [v.decode("utf-8", "replace") for v in values]
        outputs.append({"name": out.name, "datatype": out.datatype, "shape": list(out.shape), "data": values})
    payload = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id:
        payload["id"] = response.id
    return json.dumps(payload).encode()


def metadata_json(meta: oip.ModelMetadataResponse) -> dict:
    def tensors(items) -> list[dict]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
        "properties": dict(meta.properties),
    }


def v2_routes(
    inference: InferenceServicer, executor: Executor, read_body: Callable[[web.Request], Awaitable[bytes]]
) -> list[web.RouteDef]:
    """The V2 REST routes over `inference` (the V2 gRPC servicer); `read_body` is the gateway's
    (Content-Encoding and the size limit)."""

    async def server(request: web.Request) -> web.Response:
        meta = server_metadata()
        return _json({"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)})

    async def live(request: web.Request) -> web.Response:
        return _json({"live": True})

    async def ready(request: web.Request) -> web.Response:
        ok = inference.server_ready()
        return _json({"ready": ok}, 200 if ok else 503)

    async def model_metadata(request: web.Request) -> web.Response:
        m = request.match_info
        return _json(metadata_json(inference.model_metadata(m["model"], m.get("version", ""))))

    async def model_ready(request: web.Request) -> web.Response:
        m = request.match_info
        ok = inference.model_ready(m["model"], m.get("version", ""))
        return _json({"name": m["model"], "ready": ok}, 200 if ok else 400)  # Triton: 400 when not ready

    async def infer(request: web.Request) -> web.Response:
        body = await read_body(request)
        m = request.match_info
        loop = asyncio.get_running_loop()
        # JSON of many rows is slow to parse and to write: off the loop that serves gRPC too
        message = await loop.run_in_executor(executor, infer_request, body, m["model"], m.get("version", ""))
        response = await inference.infer(message, rpc="REST")
        return web.Response(
            body=await loop.run_in_executor(executor, infer_json, response), content_type="application/json"
        )

    base, pinned = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    return [
        web.get("/v2", server),
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        web.get(base, model_metadata),
        web.get(pinned, model_metadata),
        web.get(base + "/ready", model_ready),
        web.get(pinned + "/ready", model_ready),
        web.post(base + "/infer", infer),
        web.post(pinned + "/infer", infer),
    ]
