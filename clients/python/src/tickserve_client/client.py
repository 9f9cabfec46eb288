"""A small synchronous client over the generated stubs.

Plaintext by default. TLS when certificates are given (`root_certificates`: the PEM CA to
trust; `private_key` + `certificate_chain`: a client certificate for mutual TLS), or with
`tls=True` to trust the system roots. `token` is sent as `authorization: Bearer <token>` on
every call, unary and streaming (also on calls made through `client.stub` directly).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import grpc

from tickserve_proto.contract import client_channel_options, side_value
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc


def make_tick(
    instrument: str,
    timestamp_ns: int,
    bids: Sequence[tuple[float, float]],
    asks: Sequence[tuple[float, float]],
    last_price: float = 0.0,
    last_size: float = 0.0,
    sequence: int | None = None,
    aggressor: int = 0,
) -> pb.Tick:
    """A Tick from (price, size) levels, best first; aggressor +1 buy, -1 sell, 0 unknown or no trade."""
    tick = pb.Tick(
        instrument=instrument,
        timestamp_ns=timestamp_ns,
        last_price=last_price,
        last_size=last_size,
        bid_price=[p for p, _ in bids],
        bid_size=[s for _, s in bids],
        ask_price=[p for p, _ in asks],
        ask_size=[s for _, s in asks],
    )
    if sequence is not None:
        tick.sequence = sequence
    if aggressor:
        tick.aggressor = side_value(aggressor)
    return tick


_NAN = float("nan")


def _as_list(values) -> list:
    """A plain list from a sequence or a numpy-like array (anything with .tolist())."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _book(rows, levels: int | None) -> tuple[list[float], int]:
    """Row-major n * L values from an (n, L) array-like or a sequence of per-tick level sequences
    (padded with NaN to L, the longest unless `levels` is given)."""
    shape = getattr(rows, "shape", None)
    if shape is not None and len(shape) == 2 and (levels is None or levels == shape[1]):
        return rows.reshape(-1).tolist(), int(shape[1])
    rows = [_as_list(r) for r in _as_list(rows)]
    L = levels if levels is not None else max((len(r) for r in rows), default=0)
    flat: list[float] = []
    for r in rows:
        if len(r) > L:
            raise ValueError(f"a tick has {len(r)} levels, more than levels={L}")
        flat += r
        flat += [_NAN] * (L - len(r))
    return flat, L


def columns_message(frame, start: int = 0, stop: int | None = None) -> pb.TickColumns:
    """A TickColumns message of rows start:stop of a frame-like object: attributes instrument,
    timestamp_ns, last_price, last_size (length n), bid_price, bid_size, ask_price, ask_size ((n, L)
    arrays, NaN = absent level, or sequences of per-tick levels) and optionally sequence (negative or
    None = none; all rows or none must carry one) and aggressor (+1 buy, -1 sell, 0 or None unknown or
    no trade; sent only when some row has a side), e.g. tickserve.core.ticks.TickFrame. numpy arrays and
    plain lists both work; this package does not import numpy."""
    cut = slice(start, stop)
    instruments = _as_list(frame.instrument[cut])
    names: dict[str, int] = {}
    index = [names.setdefault(name, len(names)) for name in instruments]
    msg = pb.TickColumns(
        instrument=list(names),
        instrument_index=index,
        timestamp_ns=_as_list(frame.timestamp_ns[cut]),
        last_price=_as_list(frame.last_price[cut]),
        last_size=_as_list(frame.last_size[cut]),
    )
    books = [_book(getattr(frame, side)[cut], None) for side in ("bid_price", "bid_size", "ask_price", "ask_size")]
    levels = max(L for _, L in books)
    for side, (flat, L) in zip(("bid_price", "bid_size", "ask_price", "ask_size"), books):
        if L != levels:
            flat, L = _book(getattr(frame, side)[cut], levels)
        getattr(msg, side).extend(flat)
    msg.levels = levels
    sequence = getattr(frame, "sequence", None)
    if sequence is not None:
        seqs = _as_list(sequence[cut])
        have = [s is not None and s >= 0 for s in seqs]
        if any(have):
            if not all(have):
                raise ValueError("sequence: a TickColumns message carries a sequence for every tick or for none")
            msg.sequence.extend(seqs)
    aggressor = getattr(frame, "aggressor", None)
    if aggressor is not None:
        sides = _as_list(aggressor[cut])
        if any(sides):
            msg.aggressor.extend([side_value(a) for a in sides])
    return msg


def columns_from_ticks(ticks: Sequence) -> pb.TickColumns:
    """A TickColumns message of tick-like objects (as `tick_message` takes, e.g. pb.Tick). A pb.Tick's
    aggressor is sent as the Side number it holds, even one the contract does not define."""

    class _Frame:
        pass

    f = _Frame()
    for name in ("instrument", "timestamp_ns", "last_price", "last_size"):
        setattr(f, name, [getattr(t, name) for t in ticks])
    for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
        setattr(f, name, [list(getattr(t, name)) for t in ticks])
    f.sequence = [_sequence_of(t) for t in ticks]
    msg = columns_message(f)
    sides = [t.aggressor if isinstance(t, pb.Tick) else side_value(getattr(t, "aggressor", 0)) for t in ticks]
    if any(sides):
        msg.aggressor.extend(sides)
    return msg


def _sequence_of(tick):
    if isinstance(tick, pb.Tick):
        return tick.sequence if tick.HasField("sequence") else None
    return tick.sequence


def frame_columns(frame, batch_size: int = 1000) -> Iterator[pb.TickColumns]:
    """A frame-like object (see `columns_message`) as TickColumns messages of batch_size ticks."""
    n = len(frame.timestamp_ns)
    for start in range(0, n, batch_size):
        yield columns_message(frame, start, min(start + batch_size, n))


def signal_dict(signal: pb.Signal) -> dict:
    """A Signal as plain Python values, its enums by name without their prefix ("BUY", "STRONG",
    "AGGRESSIVE", "LOW"), e.g. to print, log as JSON or put in a DataFrame row. (A Signal's own
    enum fields are numbers: `signal.action` is 1 for BUY; `pb.Action.Name(1)` is "ACTION_BUY".)"""
    out: dict = {}
    for field in signal.DESCRIPTOR.fields:
        value = getattr(signal, field.name)
        if field.enum_type is not None:
            name = (
                field.enum_type.values_by_number[value].name
                if value in field.enum_type.values_by_number
                else str(value)
            )
            value = name.split("_", 1)[1] if name.startswith(field.enum_type.name.upper() + "_") else name
        elif field.name == "sequence":
            value = value if signal.HasField("sequence") else None
        elif field.is_repeated:
            value = list(value)
        out[field.name] = value
    return out


def _chunks(ticks: Iterable[pb.Tick], size: int) -> Iterator[list[pb.Tick]]:
    it = iter(ticks)
    while chunk := list(islice(it, size)):
        yield chunk


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call, whatever its type, on any channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(d.metadata or ()), self._header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _pem(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class TickserveClient:
    def __init__(
        self,
        target: str,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = None,
        root_certificates: bytes | str | None = None,
        private_key: bytes | str | None = None,
        certificate_chain: bytes | str | None = None,
        token: str | None = None,
        tls: bool | None = None,
    ) -> None:
        """`root_certificates`, `private_key`, `certificate_chain`: PEM contents (not paths).

        `tls`: None means TLS exactly when a certificate is given; True forces TLS (system
        roots if `root_certificates` is None); False with certificates is an error.
        """
        self.target = target
        self.timeout = timeout
        certificates = (root_certificates, private_key, certificate_chain)
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("mutual TLS needs both private_key and certificate_chain")
        secure = tls if tls is not None else any(c is not None for c in certificates)
        if any(c is not None for c in certificates) and not secure:
            raise ValueError("certificates given but tls=False")
        if channel is not None and (secure or any(c is not None for c in certificates)):
            raise ValueError("pass either a channel or TLS settings, not both")
        if token is not None and (not token or not token.isascii() or not token.isprintable() or " " in token):
            raise ValueError("token: must be non-empty printable ASCII without spaces")
        options = client_channel_options()  # message size, keepalive, reconnection (contract.py)
        if channel is None:
            if secure:
                credentials = grpc.ssl_channel_credentials(*map(_pem, certificates))
                channel = grpc.secure_channel(target, credentials, options=options)
            else:
                channel = grpc.insecure_channel(target, options=options)
        self.secure = secure
        self._channel = grpc.intercept_channel(channel, _BearerToken(token)) if token is not None else channel
        self.stub = pb_grpc.SignalServiceStub(self._channel)
        self.repository = pb_grpc.ModelRepositoryServiceStub(self._channel)

    def __enter__(self) -> TickserveClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def stream_signals(
        self,
        ticks: Iterable[pb.Tick],
        *,
        model: str = "",
        version: str = "",
        return_features: bool = False,
        batch_size: int = 1,
    ) -> Iterator[pb.TickResult]:
        """One TickResult per tick, in order. batch_size > 1 sends ticks in TickBatch messages."""

        def requests() -> Iterator[pb.StreamSignalsRequest]:
            yield pb.StreamSignalsRequest(
                config=pb.StreamConfig(model=model, version=version, return_features=return_features)
            )
            if batch_size <= 1:
                for tick in ticks:
                    yield pb.StreamSignalsRequest(tick=tick)
            else:
                for chunk in _chunks(ticks, batch_size):
                    yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=chunk))

        for response in self.stub.StreamSignals(requests(), timeout=self.timeout):
            yield from response.results

    def stream_signals_resuming(
        self,
        ticks: Sequence[pb.Tick],
        *,
        model: str = "",
        version: str = "",
        return_features: bool = False,
        batch_size: int = 1,
        retry_for_s: float = 30.0,
        on_resume=None,
    ) -> Iterator[pb.TickResult]:
        """`stream_signals` that reconnects when the server goes away, replays each instrument's
        last ticks as warm-up and resumes: each tick answered once, in order, with the signals of
        a stream that never broke (resume.py)."""
        from .resume import stream_signals_resuming

        return stream_signals_resuming(
            self,
            ticks,
            model=model,
            version=version,
            return_features=return_features,
            batch_size=batch_size,
            retry_for_s=retry_for_s,
            on_resume=on_resume,
        )

    def stream_columns(
        self,
        columns: Iterable[pb.TickColumns],
        *,
        model: str = "",
        version: str = "",
        return_features: bool = False,
    ) -> Iterator[pb.SignalColumns]:
        """One SignalColumns per TickColumns message, in order (see `frame_columns` and
        `columns_message` to build them from a frame or from ticks)."""

        def requests() -> Iterator[pb.StreamSignalsRequest]:
            yield pb.StreamSignalsRequest(
                config=pb.StreamConfig(model=model, version=version, return_features=return_features)
            )
            for message in columns:
                yield pb.StreamSignalsRequest(columns=message)

        for response in self.stub.StreamSignals(requests(), timeout=self.timeout):
            yield response.columns

    def predict(
        self, ticks: Sequence[pb.Tick], *, model: str = "", version: str = "", return_features: bool = False
    ) -> list[pb.Signal]:
        request = pb.PredictRequest(model=model, version=version, ticks=ticks, return_features=return_features)
        return list(self.stub.Predict(request, timeout=self.timeout).signals)

    def evaluate(
        self,
        ticks: Iterable[pb.Tick] = (),
        *,
        columns: Iterable[pb.TickColumns] = (),
        model: str = "",
        version: str = "",
        progress_every: int = 0,
        batch_size: int = 1000,
        cost_ticks: float = 0.0,
        fee_bps: float = 0.0,
        score_from_ns: int = 0,
    ) -> Iterator[pb.EvaluateResponse]:
        """Progress messages, then the final report (the last message). Send `ticks` (in TickBatch
        messages of `batch_size`) or `columns` (TickColumns messages, e.g. `frame_columns(frame)`:
        the cheaper encoding for many ticks)."""

        def requests() -> Iterator[pb.EvaluateRequest]:
            yield pb.EvaluateRequest(
                config=pb.EvaluateConfig(
                    model=model,
                    version=version,
                    progress_every=progress_every,
                    cost_ticks=cost_ticks,
                    fee_bps=fee_bps,
                    score_from_ns=score_from_ns,
                )
            )
            for chunk in _chunks(ticks, batch_size):
                yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=chunk))
            for message in columns:
                yield pb.EvaluateRequest(columns=message)

        yield from self.stub.Evaluate(requests(), timeout=self.timeout)

    def list_models(self) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout)

    def get_model(self, model: str = "", version: str = "") -> pb.ModelInfo:
        return self.stub.GetModel(pb.GetModelRequest(model=model, version=version), timeout=self.timeout)

    # --- repository administration ---------------------------------------------------

    def repository_index(self) -> list[pb.ModelInfo]:
        return list(self.repository.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=self.timeout).models)

    def load_model(self, model: str, version: str = "") -> list[pb.ModelInfo]:
        return list(self.repository.LoadModel(pb.ModelRef(model=model, version=version), timeout=self.timeout).models)

    def reload_model(self, model: str, version: str = "") -> list[pb.ModelInfo]:
        return list(self.repository.ReloadModel(pb.ModelRef(model=model, version=version), timeout=self.timeout).models)

    def unload_model(self, model: str, version: str = "") -> list[pb.ModelInfo]:
        return list(self.repository.UnloadModel(pb.ModelRef(model=model, version=version), timeout=self.timeout).models)
