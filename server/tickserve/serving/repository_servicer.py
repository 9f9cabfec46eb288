"""ModelRepositoryService: load, reload, unload and index models while serving.

Loading reads files and builds boosters, so it runs in a worker thread; the
repository swaps each entry in atomically when it is fully loaded.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import grpc

from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from ..models.repository import ModelEntry, ModelRepository
from . import converters
from .status import unary_errors


def _response(entries: list[ModelEntry]) -> pb.RepositoryResponse:
    return pb.RepositoryResponse(models=[converters.model_info(e) for e in entries])


class ModelRepositoryServicer(pb_grpc.ModelRepositoryServiceServicer):
    def __init__(self, repository: ModelRepository, executor: Executor) -> None:
        self.repository = repository
        self.executor = executor

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @unary_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext):
        return _response(await self._off_loop(self.repository.index))

    @unary_errors
    async def LoadModel(self, request: pb.ModelRef, context: grpc.aio.ServicerContext):
        return _response(await self._off_loop(self.repository.load, request.model, request.version))

    @unary_errors
    async def ReloadModel(self, request: pb.ModelRef, context: grpc.aio.ServicerContext):
        return _response(await self._off_loop(self.repository.reload, request.model, request.version))

    @unary_errors
    async def UnloadModel(self, request: pb.ModelRef, context: grpc.aio.ServicerContext):
        return _response(await self._off_loop(self.repository.unload, request.model, request.version))
