"""The HTTP/JSON gateway: health, model metadata, predict for a batch of ticks, and /metrics.

It runs in the gRPC server's event loop (aiohttp) and calls the very same
servicer methods the gRPC handlers call: the JSON body is parsed into the
gRPC request message (protobuf's JSON mapping, so field names and value
rules are the proto's), and the answer is the gRPC response message as JSON.
There is no second implementation of any logic here, only transport.

    GET  /health                                 -> {"status": "SERVING"} (liveness)
    GET  /ready                                  -> 200 when a model is READY, else 503
    GET  /v1/models                              -> ListModelsResponse
    GET  /v1/models/{model}[/versions/{version}] -> ModelInfo
    POST /v1/models/{model}[/versions/{version}]/predict   body: {"ticks": [Tick...], "returnFeatures": false}
                                                 -> PredictResponse
    GET  /metrics                                -> Prometheus text format
    /v2/...                                      -> the Open Inference Protocol's REST binding
                                                    (serving/http_v2.py, over the V2 gRPC servicer)

Errors: {"error": {"code": "INVALID_ARGUMENT", "message": "..."}} with the
HTTP status mapped from the same error hierarchy (serving/status.py); on /v2
routes in V2's shape, {"error": "...", "code": "INVALID_ARGUMENT"}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib

from aiohttp import web
from google.protobuf import json_format

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..errors import InvalidArgument, ResourceExhausted, Unauthenticated
from .http_v2 import V2_HEALTH_PATHS, v2_routes
from .status import http_error

log = logging.getLogger(__name__)

_JSON = "application/json"
_AUTH_PROBLEMS = {
    "missing": "authorization: missing bearer token: send the header 'Authorization: Bearer <token>'",
    "malformed": "authorization: malformed header: expected exactly one 'Authorization: Bearer <token>'",
    "invalid": "authorization: invalid bearer token",
}


def _json_bytes(message) -> bytes:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None).encode()


def _to_json(message) -> web.Response:
    return web.Response(body=_json_bytes(message), content_type=_JSON)


# aiohttp's own refusals (no such route, a method the route does not take, a body it cannot
# decode...) as the documented JSON error, with the code the same HTTP status carries elsewhere.
_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    411: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
}


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """The body after its Content-Encoding (identity, gzip or deflate), at most `limit` bytes
    decoded. The gateway decodes bodies itself (aiohttp's decoding is off, see HttpGateway), so a
    bad or unsupported encoding is a JSON error like any other, not the HTTP parser's plain text."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InvalidArgument(
            f"Content-Encoding: {encoding!r} is not supported (identity, gzip or deflate)", field="Content-Encoding"
        )
    # gzip: a gzip header; deflate: zlib-wrapped, as HTTP means it (wbits 32+15 detects either)
    decoder = zlib.decompressobj(32 + 15 if encoding != "deflate" else 15)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"body: not valid {encoding} data ({exc})", field="body") from None
    if len(out) > limit:
        raise ResourceExhausted(f"body: more than max_message_bytes={limit} once decoded ({encoding})", field="body")
    if not decoder.eof:
        raise InvalidArgument(f"body: truncated {encoding} data", field="body")
    return out


def _parse_predict(body: bytes) -> pb.PredictRequest:
    try:
        data = json.loads(body)
    except RecursionError:  # e.g. "[" x 100,000: the parser's stack, not a server fault
        raise InvalidArgument("body: JSON nested too deeply", field="body") from None
    except ValueError as exc:
        raise InvalidArgument(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"body: expected a JSON object, got {type(data).__name__}", field="body")
    message = pb.PredictRequest()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"body: {exc}", field="body") from None
    except RecursionError:
        raise InvalidArgument("body: JSON nested too deeply", field="body") from None
    return message


def _error_body(path: str, code: str, message: str) -> bytes:
    """The gateway's error JSON; V2 REST clients (tritonclient.http) read "error" as a string."""
    if path == "/v2" or path.startswith("/v2/"):
        return json.dumps({"error": message, "code": code}).encode()
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def build_app(signals, telemetry=None, auth=None, *, max_body_bytes: int, inference=None) -> web.Application:
    """An aiohttp application over `signals` (the SignalServicer the gRPC server uses) and, when
    given, `inference` (the V2 gRPC servicer: the /v2 routes).

    With token auth on, every route needs `Authorization: Bearer <token>`, as on gRPC;
    /health and /ready stay open unless the auth says health requires the token.
    """
    open_health = auth is None or not auth.health_requires_token

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            if auth is not None and not (open_health and request.path in ("/health", "/ready", *V2_HEALTH_PATHS)):
                problem = auth.check([("authorization", v) for v in request.headers.getall("Authorization", [])])
                if problem is not None:
                    raise Unauthenticated(_AUTH_PROBLEMS[problem])
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:  # aiohttp's own check of client_max_size
            error = ResourceExhausted(f"body: larger than the limit, max_message_bytes={max_body_bytes}", field="body")
            return _error_response(error, request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_exception_response(exc, request)
        except Exception as exc:  # noqa: BLE001 - mapped to an HTTP status in one place
            return _error_response(exc, request)

    def _http_exception_response(exc: web.HTTPException, request: web.Request) -> web.Response:
        code = _HTTP_CODES.get(exc.status, "INTERNAL" if exc.status >= 500 else "INVALID_ARGUMENT")
        if exc.status == 404:
            message = f"path: no route {request.method} {request.path}"
        elif exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            message = f"method: {request.method} is not allowed on {request.path} (allowed: {allowed})"
        else:
            message = f"request: {exc.reason}" + (f" ({exc.text})" if exc.text and exc.text != exc.reason else "")
        log.info("%s %s -> %s: %s", request.method, request.path, exc.status, message)
        if signals.recorder is not None:
            signals.recorder.call_failed("REST", code)
        body = _error_body(request.path, code, message)
        return web.Response(status=exc.status, body=body, content_type=_JSON, headers=_allow_header(exc))

    def _allow_header(exc: web.HTTPException) -> dict:
        allow = exc.headers.get("Allow") if exc.headers else None
        return {"Allow": allow} if allow else {}

    def _error_response(exc: Exception, request: web.Request) -> web.Response:
        status, payload = http_error(exc, f"{request.method} {request.path}")
        if signals.recorder is not None:
            signals.recorder.call_failed("REST", payload["code"])
        body = _error_body(request.path, payload["code"], payload["message"])
        return web.Response(status=status, body=body, content_type=_JSON)

    app = web.Application(middlewares=[errors], client_max_size=max_body_bytes)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def ready(request: web.Request) -> web.Response:
        if signals.draining:  # stopping soon: a balancer should send nothing new here
            return web.json_response({"ready": False, "draining": True}, status=503)
        models = (await signals.list_models(pb.ListModelsRequest())).models
        ok = any(m.state == pb.MODEL_STATE_READY for m in models)
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def list_models(request: web.Request) -> web.Response:
        return _to_json(await signals.list_models(pb.ListModelsRequest()))

    async def get_model(request: web.Request) -> web.Response:
        m = request.match_info
        return _to_json(await signals.get_model(pb.GetModelRequest(model=m["model"], version=m.get("version", ""))))

    async def read_body(request: web.Request) -> bytes:
        return _decoded(await request.read(), request.headers.get("Content-Encoding", ""), max_body_bytes)

    async def predict(request: web.Request) -> web.Response:
        body = await read_body(request)
        loop = asyncio.get_running_loop()
        # JSON of thousands of ticks takes long to parse and to write: off the event loop that
        # serves every gRPC stream too
        message = await loop.run_in_executor(signals.executor, _parse_predict, body)
        m = request.match_info
        message.model = m["model"]
        message.version = m.get("version", "")
        response = await signals.predict(message, rpc="REST")
        payload = await loop.run_in_executor(signals.executor, _json_bytes, response)
        return web.Response(body=payload, content_type=_JSON)

    async def metrics(request: web.Request) -> web.Response:
        if telemetry is None:
            raise web.HTTPNotFound()
        return web.Response(body=telemetry.scrape(), headers={"Content-Type": "text/plain; version=0.0.4"})

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/v1/models/{model}/versions/{version}", get_model)
    app.router.add_post("/v1/models/{model}/predict", predict)
    app.router.add_post("/v1/models/{model}/versions/{version}/predict", predict)
    if inference is not None:
        app.router.add_routes(v2_routes(inference, signals.executor, read_body))
    return app


class HttpGateway:
    """The gateway's listening socket; started and stopped with the gRPC server."""

    def __init__(self, app: web.Application) -> None:
        # auto_decompress off: the predict route decodes the body itself (`_decoded`), so an
        # encoding aiohttp's parser cannot undo (br without brotli installed, garbage) is a JSON
        # 400 from the gateway rather than the parser's plain-text one
        self.runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        self.port = 0

    async def start(self, host: str, port: int, ssl_context=None, *, reuse_port: bool = False) -> int:
        """`reuse_port`: share the port with the other processes of a `serve --processes N` group."""
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, host, port, ssl_context=ssl_context, reuse_address=True, reuse_port=reuse_port or None
        )
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the bound port when 0 was asked for
        return self.port

    async def stop(self, grace: float | None = 5.0) -> None:
        # In-flight requests get the grace gRPC gets (aiohttp's default is 60 s). The runner takes it
        # only at construction, when the grace is not known yet, hence its attribute.
        if hasattr(self.runner, "_shutdown_timeout"):
            self.runner._shutdown_timeout = grace or 0.0
        await self.runner.cleanup()
