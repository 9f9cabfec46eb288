"""The V2 model repository extension (Triton's RepositoryIndex, RepositoryModelLoad,
RepositoryModelUnload) on `inference.GRPCInferenceService`, mapped onto the one model
repository SignalService's ModelRepositoryService changes too: the same `index`, `load` and
`unload`, in a worker thread (loading reads files and builds boosters).

- RepositoryIndex: every version on disk or known, with tickserve's states (READY, LOADING,
  FAILED, UNLOADED) and the reason when not READY; `ready` keeps the READY ones.
- RepositoryModelLoad: (re)loads every version of the model on disk; when none ends READY the
  call fails FAILED_PRECONDITION with each version's reason (Triton fails a failed load too),
  so a script learns it from the status alone.
- RepositoryModelUnload: unloads every version (NOT_FOUND for a model the server never loaded);
  with `unload_dependents` (tritonclient always sends it) first the ensembles it is a member of;
  without, a member of a loaded ensemble is refused FAILED_PRECONDITION naming the ensemble.
Other parameters (Triton's `config` override, `file:` contents) are not supported: a request
carrying any is INVALID_ARGUMENT naming it, rather than a load that silently ignores them.
"""

from __future__ import annotations

import asyncio

import grpc

from tickserve_proto.inference import grpc_service_pb2 as oip

from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..models.repository import ModelRepository, ModelState
from .status import unary_errors


class RepositoryRpcs:
    """Mixed into the V2 servicer, which holds `repository` and `executor`."""

    repository: ModelRepository

    async def _in_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @unary_errors
    async def RepositoryIndex(
        self, request: oip.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> oip.RepositoryIndexResponse:
        _one_repository(request.repository_name)
        entries = await self._in_worker(self.repository.index)
        return oip.RepositoryIndexResponse(
            models=[
                oip.RepositoryIndexResponse.ModelIndex(
                    name=e.name, version=e.version, state=e.state.value, reason=e.reason
                )
                for e in entries
                if not request.ready or e.state is ModelState.READY
            ]
        )

    @unary_errors
    async def RepositoryModelLoad(
        self, request: oip.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> oip.RepositoryModelLoadResponse:
        _one_repository(request.repository_name)
        _no_parameters(request.parameters)
        entries = await self._in_worker(self.repository.load, _model_name(request.model_name), "")
        if not any(e.state is ModelState.READY for e in entries):
            raise FailedPrecondition(
                f"model_name: {request.model_name!r} did not load: "
                + "; ".join(f"version {e.version} {e.state.value}: {e.reason}" for e in entries),
                field="model_name",
            )
        return oip.RepositoryModelLoadResponse()

    @unary_errors
    async def RepositoryModelUnload(
        self, request: oip.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> oip.RepositoryModelUnloadResponse:
        _one_repository(request.repository_name)
        parameters = dict(request.parameters)
        dependents = parameters.pop("unload_dependents", None)
        _no_parameters(parameters)
        name = _model_name(request.model_name)
        if dependents is not None and dependents.bool_param:  # first: a member of a loaded ensemble stays
            for ensemble in sorted(_ensembles_of(self.repository, name)):
                await self._in_worker(self.repository.unload, ensemble, "")
        await self._in_worker(self.repository.unload, name, "")
        return oip.RepositoryModelUnloadResponse()


def _ensembles_of(repository: ModelRepository, member: str) -> set[str]:
    """The loaded ensembles that have a version of `member` among their members."""
    return {
        e.name
        for e in repository.entries()
        if e.manifest is not None
        and e.state is not ModelState.UNLOADED
        and any(m.get("model") == member for m in e.manifest.members)
    }


def _one_repository(name: str) -> None:
    if name:
        raise NotFound(
            f"repository_name: {name!r}: this server has one model repository; leave the name empty",
            field="repository_name",
        )


def _model_name(name: str) -> str:
    if not name:
        raise InvalidArgument("model_name: required", field="model_name")
    return name


def _no_parameters(parameters) -> None:
    if parameters:
        raise InvalidArgument(
            f"parameters: {sorted(parameters)!r} are not supported (the model's files on disk are what loads)",
            field="parameters",
        )
