"""Open Inference Protocol (KServe V2) gRPC: `inference.GRPCInferenceService` beside SignalService.

Any V2 client (tritonclient.grpc, KServe's and MLServer's clients, perf_analyzer, grpcurl with
protos/inference/grpc_service.proto) can check health, read metadata and get class
probabilities for rows of features it computed itself, or send ticks to a model's tick view
`M.ticks` (kserve_ticks.py) and get SignalService's signals without computing a feature. The
V2 REST routes (http_v2.py) call the same plain methods. docs/kserve.md is the user's view.

- ServerLive: true whenever the server answers.
- ServerReady: true when at least one model version is READY (the repository is loaded before
  the server starts; a FAILED model does not make the server unready, the others serve). During
  a graceful shutdown gRPC refuses new calls, so a probe fails.
- ModelReady: the state of the named version, or whether any version is READY when none is
  named; an unknown model or version is simply not ready (false, as Triton and MLServer answer).
- ServerMetadata: name "tickserve", its version, extensions ["classification"].
- ModelMetadata: platform "tickserve_<adapter>", the READY versions, one input per feature
  (FP64 [-1], FP32 accepted too), named and ordered as the model's features, so any V2 client
  (tritonclient included, whose message lacks `properties`) reads the feature order; outputs
  "probabilities" FP64 [-1, 3] and "action" BYTES [-1]; `properties` carries the feature order
  again (feature_names), the class order (classes) and the input layouts (also the one-tensor
  "features" [n, n_features]).
- RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload: kserve_repository.py.
- ModelInfer: see kserve_converters.py for the tensor layouts; the probabilities are the
  calibrated ones, columns in manifest.classes order (SELL, HOLD, BUY), exactly what
  `LoadedModel.predict` returns for the same float64 rows.

Errors go through the tickserve hierarchy and `unary_errors`: bad tensors INVALID_ARGUMENT, an
unknown model or version NOT_FOUND, a FAILED or UNLOADED one FAILED_PRECONDITION, a LOADING one
UNAVAILABLE (the repository decides, `ModelRepository.get`), too many rows
RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import descriptor_pool

from tickserve_proto.inference import grpc_service_pb2 as oip
from tickserve_proto.inference import grpc_service_pb2_grpc as oip_grpc

from .. import __version__
from ..core.signals import CLASSES, predicted_class
from ..errors import InvalidArgument, NotFound, TickserveError
from ..models.repository import LoadedModel, ModelRepository, ModelState
from . import kserve_converters as conv
from . import kserve_ticks
from .kserve_repository import RepositoryRpcs
from .status import unary_errors

if TYPE_CHECKING:  # only a type: the servicer is built by app.py and handed in
    from .servicer import SignalServicer

SERVICE_NAME = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name  # "inference.GRPCInferenceService"
SERVER_NAME = "tickserve"
EXTENSIONS = ("classification",)
INLINE_MAX_ROWS = 4  # as SignalService: a few rows cost less than the hand-off to a worker thread
DEFAULT_MAX_ROWS = 10_000

INPUT_LAYOUTS = (
    "one FP64/FP32 input per feature name, shape [n] or [n, 1] (the inputs ModelMetadata lists, in "
    f"feature order); or {conv.FEATURES_INPUT!r} FP64 or FP32 [n, n_features], columns in that order"
)


class InferenceServicer(RepositoryRpcs, oip_grpc.GRPCInferenceServiceServicer):
    """The V2 handlers. Each RPC is a thin gRPC wrapper over a plain method that raises
    tickserve errors (`server_ready`, `model_ready`, `model_metadata`, `infer`): the V2 REST
    routes of the HTTP gateway call the same methods, so there is one implementation."""

    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        signals: SignalServicer | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.repository = repository
        self.executor = executor
        self.signals = signals  # SignalService's handlers: the tick views (`M.ticks`) run through them
        self.max_rows = max_rows

    # --- the plain methods (gRPC and REST) ---------------------------------------------------

    def server_ready(self) -> bool:
        return any(e.state is ModelState.READY for e in self.repository.entries())

    def model_ready(self, name: str, version: str) -> bool:
        _require_name(name, "name")
        try:
            entry = self.repository.entry(self._served_name(name), version)
        except NotFound:
            return False
        except TickserveError as exc:
            raise _renamed(exc, "name", "version") from None
        return entry.state is ModelState.READY and entry.model is not None

    def model_metadata(self, name: str, version: str) -> oip.ModelMetadataResponse:
        served = self._served_name(name)
        model = self._model(served, version, "name", "version")
        versions = self._ready_versions(model.name)
        if served != name:
            return kserve_ticks.metadata(model, name, versions)
        return model_metadata(model, versions)

    async def infer(self, request: Any, rpc: str = "ModelInfer") -> oip.ModelInferResponse:
        served = self._served_name(request.model_name)
        if served != request.model_name:
            return await self._infer_ticks(served, request, rpc)
        model = self._model(request.model_name, request.model_version, "model_name", "model_version")
        if conv.row_count_hint(request) <= INLINE_MAX_ROWS:
            return infer_features(model, request, self.max_rows)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, infer_features, model, request, self.max_rows)

    async def _infer_ticks(self, served: str, request: Any, rpc: str) -> oip.ModelInferResponse:
        """`M.ticks`: tensors -> a TickBlock here, the signals from SignalService's own route."""
        specs = conv.requested_outputs(request, len(CLASSES), kserve_ticks.TICK_OUTPUTS)
        if conv.row_count_hint(request) <= INLINE_MAX_ROWS:
            block = kserve_ticks.block_from_request(request, self.max_rows)
        else:
            loop = asyncio.get_running_loop()
            block = await loop.run_in_executor(self.executor, kserve_ticks.block_from_request, request, self.max_rows)
        try:
            model, results = await self.signals.predict_block(
                served, request.model_version, block, rpc, kserve_ticks.rejected
            )
        except TickserveError as exc:
            if exc.field in ("model", "version"):  # the repository's words, in V2's field names
                raise _renamed(exc, "model_name", "model_version") from None
            raise
        response = oip.ModelInferResponse(model_name=request.model_name, model_version=model.version, id=request.id)
        conv.fill_response(response, kserve_ticks.output_tensors(specs, results), raw=conv.uses_raw_inputs(request))
        return response

    # --- gRPC ------------------------------------------------------------------------------

    @unary_errors
    async def ServerLive(self, request: oip.ServerLiveRequest, context: grpc.aio.ServicerContext):
        return oip.ServerLiveResponse(live=True)

    @unary_errors
    async def ServerReady(self, request: oip.ServerReadyRequest, context: grpc.aio.ServicerContext):
        return oip.ServerReadyResponse(ready=self.server_ready())

    @unary_errors
    async def ModelReady(self, request: oip.ModelReadyRequest, context: grpc.aio.ServicerContext):
        return oip.ModelReadyResponse(ready=self.model_ready(request.name, request.version))

    @unary_errors
    async def ServerMetadata(self, request: oip.ServerMetadataRequest, context: grpc.aio.ServicerContext):
        return server_metadata()

    @unary_errors
    async def ModelMetadata(self, request: oip.ModelMetadataRequest, context: grpc.aio.ServicerContext):
        return self.model_metadata(request.name, request.version)

    @unary_errors
    async def ModelInfer(self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext):
        return await self.infer(request)

    # --- helpers ---------------------------------------------------------------------------

    def _served_name(self, name: str) -> str:
        """The repository's model behind a V2 name: `M.ticks` is M's tick view (kserve_ticks.py)."""
        if self.signals is None or not name.endswith(kserve_ticks.TICKS_SUFFIX):
            return name
        return kserve_ticks.tick_view(name, {e.name for e in self.repository.entries()}) or name

    def _model(self, name: str, version: str, name_field: str, version_field: str) -> LoadedModel:
        _require_name(name, name_field)
        try:
            return self.repository.get(name, version)
        except TickserveError as exc:
            raise _renamed(exc, name_field, version_field) from None

    def _ready_versions(self, name: str) -> list[str]:
        return [e.version for e in self.repository.entries() if e.name == name and e.state is ModelState.READY]


def server_metadata() -> oip.ServerMetadataResponse:
    return oip.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))


def _require_name(name: str, field: str) -> None:
    if not name:
        raise InvalidArgument(f"{field}: required, the name of a model (V2 requests always name one)", field=field)


def _renamed(exc: TickserveError, name_field: str, version_field: str) -> TickserveError:
    """The repository's error with V2's field names ("model: ..." -> "model_name: ...")."""
    message = exc.message
    for ours, theirs in (("model", name_field), ("version", version_field)):
        if message.startswith(f"{ours}: "):
            message = f"{theirs}: " + message[len(ours) + 2 :]
            break
    else:
        message = f"{name_field}: {message}"
    renamed = type(exc)(message, field=name_field if exc.field in ("", "model") else version_field)
    renamed.status = exc.status
    return renamed


def model_metadata(model: LoadedModel, versions: list[str]) -> oip.ModelMetadataResponse:
    manifest = model.manifest
    names, classes = list(manifest.feature_names), list(manifest.classes)
    tensor = oip.ModelMetadataResponse.TensorMetadata
    return oip.ModelMetadataResponse(
        name=model.name,
        versions=versions or [model.version],
        platform=f"tickserve_{manifest.adapter}",
        # One input per feature, in the model's column order: tritonclient's metadata message has
        # no `properties`, so the input names are where a Triton/MLServer client reads the order
        # (the layout MLServer's pandas codec describes). The one-tensor "features" [n, F] layout
        # is still accepted (properties["input_layouts"]).
        inputs=[tensor(name=name, datatype="FP64", shape=[-1]) for name in names],
        outputs=[
            tensor(name=conv.PROBABILITIES_OUTPUT, datatype="FP64", shape=[-1, len(classes)]),
            tensor(name=conv.ACTION_OUTPUT, datatype="BYTES", shape=[-1]),
        ],
        properties={
            "version": model.version,  # the version these inputs and outputs describe
            "feature_names": ",".join(names),
            "classes": ",".join(classes),
            "input_layouts": INPUT_LAYOUTS,
            "probabilities": "calibrated class probabilities, columns in classes order",
            "action": "the most probable class (ties: HOLD, then the earlier class)",
            "adapter": manifest.adapter,
            "feature_stage_version": str(manifest.feature_stage_version),
        },
    )


def infer_features(model: LoadedModel, request: Any, max_rows: int) -> oip.ModelInferResponse:
    """One ModelInfer, start to end (on the event loop for a few rows, else in a worker thread)."""
    classes = list(model.manifest.classes)
    specs = conv.requested_outputs(request, len(classes))  # before the work: a bad request costs nothing
    x = conv.features_matrix(request, model.manifest.feature_names, max_rows)
    _, probs = model.predict(x)
    probs = np.ascontiguousarray(probs, dtype=np.float64)
    tensors = conv.output_tensors(specs, probs, predicted_class(probs), classes)
    response = oip.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    conv.fill_response(response, tensors, raw=conv.uses_raw_inputs(request))
    return response


def add_to_server(
    server: grpc.aio.Server,
    repository: ModelRepository,
    executor: Executor,
    signals: SignalServicer | None = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> InferenceServicer:
    servicer = InferenceServicer(repository, executor, signals, max_rows=max_rows)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    return servicer  # the HTTP gateway's V2 REST routes call the same methods


class _ChainedPool:
    """Server reflection over the default descriptor pool and then the V2 stubs' private one.

    The V2 stubs live in their own pool (see the Makefile: tritonclient and others register the
    same `inference.*` names in the default pool), so reflection must look in both for
    `grpcurl describe inference.GRPCInferenceService` to work.
    """

    def __init__(self, *pools) -> None:
        self._pools = pools

    def __getattr__(self, method: str):
        def find(*args):
            error: Exception = KeyError(args[0] if args else method)
            for pool in self._pools:
                try:
                    return getattr(pool, method)(*args)
                except KeyError as exc:
                    error = exc
            raise error

        return find


REFLECTION_POOL = _ChainedPool(descriptor_pool.Default(), oip.DESCRIPTOR.pool)
