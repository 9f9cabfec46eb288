"""The error model (docs/errors.md) against a real server on a loopback port, through a real channel.

Every case asserts the status code and the message (which names the field and the value).
Per-tick problems are answered inside the stream and the stream goes on; problems with the
call itself end it with a gRPC status. The server here serves a small model of its own
(trained in about a second), so this file does not need the session's model repository.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tickserve.models.repository import ModelEntry, ModelRepository, ModelState
from tickserve.serving.app import TickServer, create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import make_tick
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import _LoopThread

MODEL = "hm"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
CODE = {c.value[0]: c for c in grpc.StatusCode}


def small_repository(root: Path, plugins) -> Path:
    """models/hm/1: a real LightGBM model, trained small and fast."""
    train_model(
        simulate(5_000, seed=3),
        adapter=plugins.adapters["lightgbm"],
        models_dir=root,
        name=MODEL,
        params={"num_boost_round": 10, "early_stopping_rounds": 5},
    )
    return root


@dataclass
class Served:
    address: str
    repository: ModelRepository
    tick_server: TickServer
    runner: _LoopThread


def start_server(root: Path, plugins, **kwargs) -> Served:
    repository = ModelRepository(root, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    tick_server = runner.run(create_server("127.0.0.1:0", repository, **kwargs))
    return Served(f"127.0.0.1:{tick_server.port}", repository, tick_server, runner)


def stop_server(served: Served) -> None:
    served.runner.run(served.tick_server.stop(1.0))
    served.runner.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, plugins):
    served = start_server(small_repository(tmp_path_factory.mktemp("hm-models"), plugins), plugins)
    yield served
    stop_server(served)


@pytest.fixture(scope="module")
def stub(srv):
    with grpc.insecure_channel(srv.address) as channel:
        yield pb_grpc.SignalServiceStub(channel)


@pytest.fixture(scope="module")
def admin(srv):
    with grpc.insecure_channel(srv.address) as channel:
        yield pb_grpc.ModelRepositoryServiceStub(channel)


# --- helpers ---------------------------------------------------------------------------


BIDS = [(99.99, 10.0), (99.98, 20.0), (99.97, 30.0)]
ASKS = [(100.01, 12.0), (100.02, 22.0), (100.03, 32.0)]
T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC


def tick(instrument="X", i=0, *, sequence: int | None = None, bids=BIDS, asks=ASKS) -> pb.Tick:
    return make_tick(instrument, T0 + i * 1_000_000, bids, asks, last_price=100.0, last_size=1.0, sequence=sequence)


def stream_requests(ticks, *, model=MODEL, version="", batch_size=1, return_features=False):
    yield pb.StreamSignalsRequest(config=pb.StreamConfig(model=model, version=version, return_features=return_features))
    for start in range(0, len(ticks), batch_size):
        chunk = ticks[start : start + batch_size]
        if batch_size == 1:
            yield pb.StreamSignalsRequest(tick=chunk[0])
        else:
            yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=chunk))


def results_of(stub, ticks, **kwargs) -> list[pb.TickResult]:
    """Every result of one stream; the call must end OK."""
    call = stub.StreamSignals(stream_requests(ticks, **kwargs), timeout=30)
    results = [r for response in call for r in response.results]
    assert call.code() == grpc.StatusCode.OK
    return results


def rpc_error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def copy(t: pb.Tick, **fields) -> pb.Tick:
    out = pb.Tick()
    out.CopyFrom(t)
    for name, value in fields.items():
        if isinstance(value, list):
            out.ClearField(name)
            getattr(out, name).extend(value)
        else:
            setattr(out, name, value)
    return out


def _set(name, index, value):
    def mutate(t):
        values = list(getattr(t, name))
        values[index] = value
        return copy(t, **{name: values})

    return mutate


nan, inf = float("nan"), float("inf")

# (id, mutation of a good tick, field named, text the message must contain)
BAD_TICKS = [
    ("nan-bid-price", _set("bid_price", 0, nan), "bid_price[0]", "got nan"),
    ("inf-ask-price", _set("ask_price", 0, inf), "ask_price[0]", "got inf"),
    ("-inf-bid-price", _set("bid_price", 2, -inf), "bid_price[2]", "got -inf"),
    ("zero-bid-price", _set("bid_price", 0, 0.0), "bid_price[0]", "got 0.0"),
    ("negative-ask-price", _set("ask_price", 1, -100.02), "ask_price[1]", "got -100.02"),
    ("negative-bid-size", _set("bid_size", 1, -5.0), "bid_size[1]", "got -5.0"),
    ("nan-ask-size", _set("ask_size", 0, nan), "ask_size[0]", "got nan"),
    ("inf-ask-size", _set("ask_size", 2, inf), "ask_size[2]", "got inf"),
    ("nan-last-price", lambda t: copy(t, last_price=nan), "last_price", "got nan"),
    ("negative-last-price", lambda t: copy(t, last_price=-1.0), "last_price", "got -1.0"),
    ("negative-last-size", lambda t: copy(t, last_size=-2.0), "last_size", "got -2.0"),
    ("nan-last-size", lambda t: copy(t, last_size=nan), "last_size", "got nan"),
    ("missing-instrument", lambda t: copy(t, instrument=""), "instrument", "got an empty string"),
    ("control-char-instrument", lambda t: copy(t, instrument="A\nB"), "instrument", "'A\\nB'"),
    ("long-instrument", lambda t: copy(t, instrument="I" * 129), "instrument", "got 129"),
    ("zero-timestamp", lambda t: copy(t, timestamp_ns=0), "timestamp_ns", "got 0"),
    ("negative-timestamp", lambda t: copy(t, timestamp_ns=-5), "timestamp_ns", "got -5"),
    (
        "crossed-book",
        lambda t: copy(t, bid_price=[100.02, 99.98, 99.97]),
        "bid_price[0]",
        "best bid 100.02 > best ask 100.01",
    ),
    ("empty-bid-side", lambda t: copy(t, bid_price=[], bid_size=[]), "bid_price", "at least one level, got none"),
    ("empty-ask-side", lambda t: copy(t, ask_price=[], ask_size=[]), "ask_price", "at least one level, got none"),
    (
        "bids-out-of-order",
        lambda t: copy(t, bid_price=[99.99, 99.995, 99.97]),
        "bid_price[1]",
        "got 99.995 after 99.99",
    ),
    (
        "asks-not-strictly-ascending",
        lambda t: copy(t, ask_price=[100.01, 100.01, 100.03]),
        "ask_price[1]",
        "got 100.01 after 100.01",
    ),
    ("sizes-missing", lambda t: copy(t, bid_size=[10.0]), "bid_size", "has 1 values but bid_price has 3"),
    (
        "too-many-levels",
        lambda t: copy(t, bid_price=[99.99 - 0.01 * i for i in range(11)], bid_size=[1.0] * 11),
        "bid_price",
        "at most 10 levels, got 11",
    ),
    # proto3 keeps an enum number it does not know as an int: rejected naming it, and -1 is not a sell
    (
        "unknown-aggressor",
        lambda t: copy(t, aggressor=7),
        "aggressor",
        "must be SIDE_UNSPECIFIED (0), SIDE_BUY (1) or SIDE_SELL (2), got 7",
    ),
    ("negative-aggressor", lambda t: copy(t, aggressor=-1), "aggressor", "got -1"),
    (
        "buy-aggressor-without-trade",
        lambda t: copy(t, aggressor=pb.SIDE_BUY, last_size=0.0),
        "aggressor",
        "aggressor: SIDE_BUY given but last_size is 0: no trade on this tick",
    ),
    (
        "sell-aggressor-without-trade",
        lambda t: copy(t, aggressor=pb.SIDE_SELL, last_size=0.0),
        "aggressor",
        "aggressor: SIDE_SELL given but last_size is 0: no trade on this tick",
    ),
]


# --- per-tick errors: the stream goes on ---------------------------------------------------


@pytest.mark.parametrize("mutate, field, text", [c[1:] for c in BAD_TICKS], ids=[c[0] for c in BAD_TICKS])
def test_bad_tick_gets_its_own_error_and_the_stream_goes_on(stub, mutate, field, text):
    ticks = [tick(i=0, sequence=0), mutate(tick(i=1, sequence=1)), tick(i=2, sequence=2)]
    results = results_of(stub, ticks)
    assert [r.WhichOneof("result") for r in results] == ["signal", "error", "signal"]
    error = results[1].error
    assert CODE[error.code] == INVALID
    assert error.field == field
    assert error.message.startswith(f"{field}: ") and text in error.message, error.message
    assert (error.timestamp_ns, error.sequence) == (ticks[1].timestamp_ns, 1)  # the tick's identity, echoed
    assert results[2].signal.sequence == 2 and results[2].signal.sequence_gap == 1  # the rejected 1 never counted


@pytest.mark.parametrize("mutate, field, text", [c[1:] for c in BAD_TICKS], ids=[c[0] for c in BAD_TICKS])
def test_bad_tick_fails_a_predict_call_naming_it(stub, mutate, field, text):
    ticks = [tick(i=0), tick(i=1), mutate(tick(i=2))]
    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=ticks), timeout=10))
    assert err.code() == INVALID
    assert err.details().startswith(f"ticks[2].{field}: ") and text in err.details(), err.details()


def test_bad_tick_fails_an_evaluation_naming_it(stub):
    ticks = [tick(i=i) for i in range(10)]
    ticks[7] = _set("ask_price", 0, nan)(ticks[7])
    requests = [
        pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL)),
        pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks)),
    ]
    err = rpc_error(lambda: list(stub.Evaluate(iter(requests), timeout=10)))
    assert err.code() == INVALID
    assert err.details() == "ticks[7].ask_price[0]: must be a price >= 1e-09 and < 1e+12, got nan"


def test_ticks_with_and_without_an_aggressor_all_get_signals(stub):
    """The side is optional: a trade tick with SIDE_BUY, SIDE_SELL or none, and a book tick (no trade,
    no side) are all answered with a signal, in a stream and in Predict."""
    ticks = [
        tick(i=0, sequence=0),  # a trade with no side (older clients): the feature stage infers it
        copy(tick(i=1, sequence=1), aggressor=pb.SIDE_BUY),
        copy(tick(i=2, sequence=2), aggressor=pb.SIDE_SELL),
        copy(tick(i=3, sequence=3), last_size=0.0),  # no trade, no side
        copy(tick(i=4, sequence=4), aggressor=pb.SIDE_UNSPECIFIED),
    ]
    for batch_size in (1, 5):
        results = results_of(stub, ticks, batch_size=batch_size)
        assert [r.WhichOneof("result") for r in results] == ["signal"] * 5
        assert [r.signal.sequence for r in results] == [0, 1, 2, 3, 4]
    signals = stub.Predict(pb.PredictRequest(model=MODEL, ticks=ticks), timeout=10).signals
    assert len(signals) == 5 and all(s.p_buy + s.p_hold + s.p_sell == pytest.approx(1.0) for s in signals)


def test_locked_book_is_accepted(stub):
    locked = tick(i=1, bids=[(100.01, 5.0)], asks=[(100.01, 7.0)])
    one_level = tick(i=2, bids=[(99.99, 1.0)], asks=[(100.0, 1.0)])
    results = results_of(stub, [tick(i=0), locked, one_level])
    assert [r.WhichOneof("result") for r in results] == ["signal"] * 3
    assert results[1].signal.p_buy + results[1].signal.p_hold + results[1].signal.p_sell == pytest.approx(1.0)


def test_equal_timestamps_are_accepted_and_going_back_is_rejected_per_instrument(stub):
    ticks = [tick("A", 5), tick("A", 5), tick("B", 1), tick("A", 4), tick("B", 1)]
    results = results_of(stub, ticks)
    assert [r.WhichOneof("result") for r in results] == ["signal", "signal", "signal", "error", "signal"]
    error = results[3].error
    assert CODE[error.code] == INVALID and error.field == "timestamp_ns" and error.instrument == "A"
    assert error.message == (
        f"timestamp_ns: {T0 + 4_000_000} is before this instrument's previous tick ({T0 + 5_000_000})"
    )


# --- sequence numbers ------------------------------------------------------------------------


def test_duplicate_or_older_sequence_is_already_exists_per_instrument(stub):
    ticks = [
        tick("A", 0, sequence=10),
        tick("B", 0, sequence=10),  # another instrument: its own sequence
        tick("A", 1, sequence=10),  # duplicate
        tick("A", 2, sequence=9),  # older
        tick("A", 3, sequence=11),
        tick("A", 4),  # no sequence: not checked
        tick("A", 5, sequence=11),  # still a duplicate: the unsequenced tick changed nothing
    ]
    results = results_of(stub, ticks)
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["signal", "signal", "error", "error", "signal", "signal", "error"]
    for i, (seq, last) in {2: (10, 10), 3: (9, 10), 6: (11, 11)}.items():
        error = results[i].error
        assert CODE[error.code] == grpc.StatusCode.ALREADY_EXISTS
        assert error.field == "sequence" and error.sequence == seq and error.instrument == "A"
        assert error.message == (
            f"sequence: {seq} is not after this instrument's last accepted sequence {last} (a duplicate or replayed tick)"
        )
    assert not results[5].signal.HasField("sequence") and results[5].signal.sequence_gap == 0


def test_a_sequence_gap_is_accepted_and_reported(stub):
    ticks = [
        tick("A", 0, sequence=100),  # first sequenced tick of A: no gap
        tick("A", 1, sequence=101),
        tick("B", 1, sequence=7),
        tick("A", 2, sequence=105),  # 102, 103, 104 missing
        tick("A", 3),  # no sequence: gap 0, and A's last sequence stays 105
        tick("B", 2, sequence=8),
        tick("A", 4, sequence=107),  # 106 missing
    ]
    signals = [r.signal for r in results_of(stub, ticks)]
    assert [s.sequence_gap for s in signals] == [0, 0, 0, 3, 0, 0, 1]
    assert [s.sequence for s in signals if s.HasField("sequence")] == [100, 101, 7, 105, 8, 107]


def test_a_rejected_tick_can_be_sent_again_corrected(stub):
    bad = _set("bid_price", 0, nan)(tick(i=1, sequence=1))
    results = results_of(stub, [tick(i=0, sequence=0), bad, tick(i=1, sequence=1)])
    assert [r.WhichOneof("result") for r in results] == ["signal", "error", "signal"]
    assert results[2].signal.sequence_gap == 0


def test_duplicate_sequence_fails_predict_and_evaluate_naming_it(stub):
    ticks = [tick(i=0, sequence=1), tick(i=1, sequence=2), tick(i=2, sequence=2)]
    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=ticks), timeout=10))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == (
        "ticks[2].sequence: 2 is not after this instrument's last accepted sequence 2 (a duplicate or replayed tick)"
    )
    requests = [pb.EvaluateRequest(tick=t) for t in ticks]
    err = rpc_error(lambda: list(stub.Evaluate(iter(requests), timeout=10)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and err.details().startswith(
        "ticks[2].sequence: 2 is not after"
    )


# --- invalid ticks never poison the feature state ---------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 64])
def test_bad_ticks_in_the_middle_leave_every_later_signal_bit_identical(stub, batch_size):
    """Every kind of rejected tick, interleaved among good ones (one message at a time, and inside
    vectorised batches), changes no later signal: probabilities and features equal to the last bit."""
    good = frame_to_protos(simulate(600, seed=21))  # three instruments, sequenced
    clean = results_of(stub, good, batch_size=batch_size, return_features=True)
    assert all(r.WhichOneof("result") == "signal" for r in clean)

    mixed, expected_errors, k = [], [], 0
    bad_kinds = [c[1] for c in BAD_TICKS] + [
        lambda nxt, prev: copy(prev),  # a replay of the previous tick: duplicate sequence
        lambda nxt, prev: copy(prev, sequence=nxt.sequence, timestamp_ns=prev.timestamp_ns - 1),  # time going back
    ]
    for i, t in enumerate(good):
        if i >= 200 and i % 7 == 0 and k < len(bad_kinds):
            kind = bad_kinds[k]
            prev = next(p for p in reversed(good[:i]) if p.instrument == t.instrument)
            mixed.append(kind(t, prev) if k >= len(BAD_TICKS) else kind(t))
            expected_errors.append(len(mixed) - 1)
            k += 1
        mixed.append(t)
    assert k == len(bad_kinds)
    results = results_of(stub, mixed, batch_size=batch_size, return_features=True)
    assert len(results) == len(mixed)
    errors = [i for i, r in enumerate(results) if r.WhichOneof("result") == "error"]
    assert errors == expected_errors
    codes = {CODE[results[i].error.code] for i in errors}
    assert codes == {INVALID, grpc.StatusCode.ALREADY_EXISTS}
    signals = [r.signal for i, r in enumerate(results) if i not in set(errors)]
    assert len(signals) == len(clean)
    for i, (s, c) in enumerate(zip(signals, clean)):
        c = c.signal
        assert (s.p_sell, s.p_hold, s.p_buy) == (c.p_sell, c.p_hold, c.p_buy), f"probabilities differ at good tick {i}"
        assert list(s.features) == list(c.features), f"features differ at good tick {i}"
        assert (s.sequence, s.sequence_gap, s.warmed_up) == (c.sequence, c.sequence_gap, c.warmed_up)


# --- the call itself: ended with a status ------------------------------------------------------


def test_a_message_with_no_payload_ends_the_stream(stub):
    requests = [pb.StreamSignalsRequest(tick=tick()), pb.StreamSignalsRequest()]
    err = rpc_error(lambda: list(stub.StreamSignals(iter(requests), timeout=10)))
    assert err.code() == INVALID
    assert err.details() == "payload: the message carries none of config, tick, batch, columns or warmup"


def test_unknown_model_or_version_is_not_found_everywhere(stub):
    calls = {
        "StreamSignals": lambda m, v: list(
            stub.StreamSignals(stream_requests([tick()], model=m, version=v), timeout=10)
        ),
        "Predict": lambda m, v: stub.Predict(pb.PredictRequest(model=m, version=v, ticks=[tick()]), timeout=10),
        "Evaluate": lambda m, v: list(
            stub.Evaluate(
                iter(
                    [pb.EvaluateRequest(config=pb.EvaluateConfig(model=m, version=v)), pb.EvaluateRequest(tick=tick())]
                ),
                timeout=10,
            )
        ),
        "GetModel": lambda m, v: stub.GetModel(pb.GetModelRequest(model=m, version=v), timeout=10),
    }
    for name, call in calls.items():
        err = rpc_error(lambda: call("nope", ""))
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "model: no model named 'nope'"), name
        err = rpc_error(lambda: call(MODEL, "9"))
        assert err.code() == grpc.StatusCode.NOT_FOUND, name
        assert err.details() == "version: model 'hm' has no version '9' (has: 1)", name


@pytest.fixture
def odd_states(srv):
    """hm/2 LOADING and hm/3 FAILED, put straight into the repository (and taken out after)."""
    entries = srv.repository._entries
    root = srv.repository.root
    entries[(MODEL, "2")] = ModelEntry(MODEL, "2", root / MODEL / "2", ModelState.LOADING)
    entries[(MODEL, "3")] = ModelEntry(
        MODEL, "3", root / MODEL / "3", ModelState.FAILED, "model file 'model.txt' is missing"
    )
    yield
    entries.pop((MODEL, "2"))
    entries.pop((MODEL, "3"))


def test_loading_model_is_unavailable_and_failed_model_is_failed_precondition(stub, odd_states):
    calls = {
        "StreamSignals": lambda v: list(stub.StreamSignals(stream_requests([tick()], version=v), timeout=10)),
        "Predict": lambda v: stub.Predict(pb.PredictRequest(model=MODEL, version=v, ticks=[tick()]), timeout=10),
        "Evaluate": lambda v: list(
            stub.Evaluate(
                iter(
                    [
                        pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL, version=v)),
                        pb.EvaluateRequest(tick=tick()),
                    ]
                ),
                timeout=10,
            )
        ),
    }
    for name, call in calls.items():
        err = rpc_error(lambda: call("2"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE, name
        assert err.details() == "model: 'hm' version '2' is LOADING, retry when it is READY", name
        err = rpc_error(lambda: call("3"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, name
        assert err.details() == "model: 'hm' version '3' is FAILED: model file 'model.txt' is missing", name
    # a request naming no version still gets the newest READY one
    assert stub.Predict(pb.PredictRequest(model=MODEL, ticks=[tick()]), timeout=10).signals[0].model_version == "1"
    info = stub.GetModel(pb.GetModelRequest(model=MODEL, version="2"), timeout=10)
    assert info.state == pb.MODEL_STATE_LOADING


BAD_NAMES = ["../etc", "..", "a/b", "/abs", "a\\b", ".hidden", "-x", "a b", "x\x00y", "名前", "a..b", "v" * 129]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_model_and_version_outside_letters_digits_and_dot_dash_underscore_are_invalid(stub, admin, bad):
    shown = repr(bad) if len(bad) <= 64 else f"{bad[:64]!r}... (129 characters)"
    expected = "is not a valid name (1 to 128 letters, digits and ._-, starting with a letter or digit, no '..')"
    calls = [
        ("model", lambda: list(stub.StreamSignals(stream_requests([], model=bad), timeout=10))),
        ("version", lambda: list(stub.StreamSignals(stream_requests([], version=bad), timeout=10))),
        ("model", lambda: stub.Predict(pb.PredictRequest(model=bad, ticks=[tick()]), timeout=10)),
        ("version", lambda: stub.Predict(pb.PredictRequest(model=MODEL, version=bad), timeout=10)),
        (
            "model",
            lambda: list(stub.Evaluate(iter([pb.EvaluateRequest(config=pb.EvaluateConfig(model=bad))]), timeout=10)),
        ),
        ("version", lambda: stub.GetModel(pb.GetModelRequest(model=MODEL, version=bad), timeout=10)),
        ("model", lambda: admin.LoadModel(pb.ModelRef(model=bad), timeout=10)),
        ("version", lambda: admin.LoadModel(pb.ModelRef(model=MODEL, version=bad), timeout=10)),
        ("version", lambda: admin.UnloadModel(pb.ModelRef(model=MODEL, version=bad), timeout=10)),
    ]
    for field, call in calls:
        err = rpc_error(call)
        assert err.code() == INVALID, (field, err.details())
        assert err.details() == f"{field}: {shown} {expected}"


def test_evaluate_progress_every_out_of_range_is_invalid(stub):
    def evaluate(every):
        requests = [pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL, progress_every=every))]
        requests += [pb.EvaluateRequest(batch=pb.TickBatch(ticks=[tick(i=i) for i in range(0, 60)]))]
        return list(stub.Evaluate(iter(requests), timeout=10))

    for every in (2**64 - 1, 1_000_000_001):  # -1 sent as uint64, and one past the limit
        err = rpc_error(lambda: evaluate(every))
        assert err.code() == INVALID
        assert err.details() == f"config.progress_every: must be 0 (every 10000 ticks) or 1 to 1000000000, got {every}"
    assert [r.WhichOneof("payload") for r in evaluate(1_000_000_000)] == ["report"]
    assert [r.WhichOneof("payload") for r in evaluate(1)] == ["progress", "report"]  # at most one per message


def test_evaluate_without_ticks_is_invalid(stub):
    for requests in ([], [pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL))]):
        err = rpc_error(lambda: list(stub.Evaluate(iter(requests), timeout=10)))
        assert (err.code(), err.details()) == (INVALID, "Evaluate: the stream ended before any tick was sent")


# --- the shape of a stream ----------------------------------------------------------------


def test_an_empty_stream_ends_ok_with_no_answers(stub):
    call = stub.StreamSignals(iter([]), timeout=10)
    assert list(call) == [] and call.code() == grpc.StatusCode.OK


def test_a_stream_of_only_its_config_ends_ok_with_no_answers(stub):
    call = stub.StreamSignals(stream_requests([]), timeout=10)
    assert list(call) == [] and call.code() == grpc.StatusCode.OK
    err = rpc_error(lambda: list(stub.StreamSignals(stream_requests([], model="nope"), timeout=10)))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "model: no model named 'nope'")


def test_an_empty_batch_gets_an_empty_answer(stub):
    requests = [pb.StreamSignalsRequest(batch=pb.TickBatch()), pb.StreamSignalsRequest(tick=tick())]
    responses = list(stub.StreamSignals(iter(requests), timeout=10))
    assert [len(r.results) for r in responses] == [0, 1]


def test_everything_sent_before_an_early_half_close_is_answered(stub):
    """The client sends 40 messages and half-closes before reading anything: every tick is
    answered, in order, and then the call ends OK."""
    sent = threading.Event()
    ticks = [tick("H", i, sequence=i) for i in range(400)]

    def requests():
        yield from stream_requests(ticks, batch_size=10)
        sent.set()  # returning from the generator half-closes the call

    call = stub.StreamSignals(requests(), timeout=30)
    assert sent.wait(10)
    time.sleep(0.2)  # the half-close is on its way before a single answer is read
    results = [r for response in call for r in response.results]
    assert call.code() == grpc.StatusCode.OK
    assert [r.signal.sequence for r in results] == list(range(400))
