"""The columnar StreamSignals path (TickColumns in, SignalColumns out) against the per-tick path.

Through a real server: the same ticks, invalid ones mixed in, sent as TickBatch messages and
as TickColumns messages in several chunkings, must get the same answers field for field
(probabilities bit for bit, the same error codes and messages). In process: the vectorised
signal rules equal `decide`, and the stream checks (instrument limit, sequence, time order)
equal `SignalSession.process`.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from tickserve.core.columnar import process_columns
from tickserve.core.session import Scored, SessionLimits, SignalSession
from tickserve.core.signals import RISKS, STRENGTHS, URGENCIES, SignalRules, decide, decide_many
from tickserve.core.ticks import Tick
from tickserve.evaluation.labels import CLASSES
from tickserve.serving import converters, tick_input
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import columns_from_ticks, columns_message, frame_columns
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL


def _bad_ticks(ticks: list[pb.Tick]) -> list[pb.Tick]:
    """The simulated ticks with invalid, out-of-order, duplicate and shallow ticks mixed in."""
    out = list(ticks)
    rng = np.random.default_rng(7)

    def variant(i: int, edit) -> pb.Tick:
        t = pb.Tick()
        t.CopyFrom(ticks[i])
        edit(t)
        return t

    def set_(name, value):
        return lambda t: setattr(t, name, value)

    def level(side, k, value):
        def edit(t):
            getattr(t, side)[k] = value

        return edit

    def shallow(t):  # 3 bid levels and 1 ask level: valid
        for side, keep in (("bid", 3), ("ask", 1)):
            for kind in ("price", "size"):
                field = getattr(t, f"{side}_{kind}")
                del field[keep:]

    def no_bids(t):
        del t.bid_price[:]
        del t.bid_size[:]

    def crossed(t):
        t.bid_price[0] = t.ask_price[0] + 0.05

    def side_without_trade(t):
        t.last_size = 0.0
        t.aggressor = pb.SIDE_SELL

    def flip_side(t):  # valid: a trade tick with the other side, or a side on a tick without one
        t.last_size = t.last_size or 1.0
        t.aggressor = pb.SIDE_BUY if t.aggressor == pb.SIDE_SELL else pb.SIDE_SELL

    edits = [
        set_("instrument", ""),
        set_("instrument", "X" * 200),
        set_("instrument", "BAD\x01"),
        set_("timestamp_ns", 0),
        set_("timestamp_ns", -5),
        set_("last_price", math.nan),
        set_("last_price", math.inf),
        set_("last_size", -1.0),
        set_("sequence", 2**63),
        level("bid_price", 0, math.nan),
        level("bid_price", 2, 1e13),
        level("ask_size", 4, -2.0),
        level("bid_size", 9, math.inf),
        level("bid_price", 3, 1.0e3),  # not descending
        level("ask_price", 1, 0.5),  # not ascending
        no_bids,
        crossed,
        shallow,
        shallow,
        lambda t: setattr(t, "timestamp_ns", t.timestamp_ns - 10**12),  # time going backwards
        lambda t: None,  # a duplicate (same sequence)
        set_("aggressor", 7),  # a Side number the contract does not define
        set_("aggressor", -1),
        side_without_trade,
        flip_side,
    ]
    for edit in edits * 3:
        i = int(rng.integers(60, len(ticks) - 1))
        out.insert(out.index(ticks[i]) + 1, variant(i, edit))
    del out[300:305]  # a sequence gap
    return out


@pytest.fixture(scope="module")
def ticks():
    return _bad_ticks(frame_to_protos(simulate(2_400, seed=31)))


def _columns_answers(client, ticks, chunk, return_features=False):
    messages = [columns_from_ticks(ticks[i : i + chunk]) for i in range(0, len(ticks), chunk)]
    answers = list(client.stream_columns(messages, model=MODEL, return_features=return_features))
    assert len(answers) == len(messages)
    return answers


def _assert_same(results: list[pb.TickResult], answers: list[pb.SignalColumns], features=False):
    i = 0
    errors = 0
    for cols in answers:
        n = len(cols.code)
        for field in (
            "p_sell",
            "p_hold",
            "p_buy",
            "confidence",
            "edge_score",
            "action",
            "strength",
            "urgency",
            "risk",
            "warmed_up",
            "sequence_gap",
        ):
            assert len(getattr(cols, field)) == n, field
        err = dict(zip(cols.error_index, cols.errors))
        width = len(cols.features) // n if features else 0
        for j in range(n):
            r = results[i + j]
            if r.WhichOneof("result") == "error":
                errors += 1
                assert cols.code[j] == r.error.code != 0
                assert err[j] == r.error, (i + j, err.get(j), r.error)
                assert math.isnan(cols.p_buy[j]) and cols.action[j] == 0
                continue
            s = r.signal
            assert cols.code[j] == 0 and j not in err
            assert cols.model == s.model and cols.model_version == s.model_version
            for field in ("p_sell", "p_hold", "p_buy", "confidence", "edge_score"):
                assert getattr(cols, field)[j] == getattr(s, field), (i + j, field)  # bit for bit
            assert (cols.action[j], cols.strength[j], cols.urgency[j], cols.risk[j]) == (
                s.action,
                s.strength,
                s.urgency,
                s.risk,
            )
            assert cols.warmed_up[j] == s.warmed_up
            assert cols.sequence_gap[j] == s.sequence_gap
            if features:
                assert list(cols.features[j * width : (j + 1) * width]) == list(s.features)
        i += n
    assert i == len(results)
    return errors


@pytest.mark.parametrize("chunk", [1000, 137, 1, 5000])
def test_columns_answer_exactly_as_per_tick_batches(client, ticks, chunk):
    results = list(client.stream_signals(ticks, model=MODEL, batch_size=500))
    errors = _assert_same(results, _columns_answers(client, ticks, chunk))
    assert errors >= 40  # the invalid ticks were really rejected
    codes = {r.error.code for r in results if r.WhichOneof("result") == "error"}
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.ALREADY_EXISTS.value[0]}
    gaps = [r.signal.sequence_gap for r in results if r.WhichOneof("result") == "signal"]
    assert max(gaps) >= 5


def test_the_bad_ticks_include_every_aggressor_error(client, ticks):
    assert sum(t.aggressor == pb.SIDE_BUY for t in ticks) > 100
    assert sum(t.aggressor == pb.SIDE_SELL for t in ticks) > 100
    results = list(client.stream_signals(ticks, model=MODEL, batch_size=500))
    messages = {r.error.message for r in results if r.WhichOneof("result") == "error" and r.error.field == "aggressor"}
    assert messages == {
        "aggressor: must be SIDE_UNSPECIFIED (0), SIDE_BUY (1) or SIDE_SELL (2), got 7",
        "aggressor: must be SIDE_UNSPECIFIED (0), SIDE_BUY (1) or SIDE_SELL (2), got -1",
        "aggressor: SIDE_SELL given but last_size is 0: no trade on this tick",
    }


def test_columns_with_sides_equal_a_batch_of_the_same_ticks(client):
    """TickColumns carrying the aggressor array: the same answers as a TickBatch of the same ticks;
    a message where no tick has a side leaves the array empty."""
    frame = simulate(1_500, seed=14)
    protos = frame_to_protos(frame)
    assert {t.aggressor for t in protos} == {pb.SIDE_UNSPECIFIED, pb.SIDE_BUY, pb.SIDE_SELL}
    message = columns_message(frame)
    assert len(message.aggressor) == len(frame)
    assert list(message.aggressor) == [t.aggressor for t in protos] == list(columns_from_ticks(protos).aggressor)
    results = list(client.stream_signals(protos, model=MODEL, batch_size=500))
    assert _assert_same(results, list(client.stream_columns([message], model=MODEL))) == 0
    no_trades = [t for t in protos if t.last_size == 0][:50]
    assert len(columns_from_ticks(no_trades).aggressor) == 0


def test_columns_return_features_like_per_tick(client, ticks):
    results = list(client.stream_signals(ticks[:700], model=MODEL, batch_size=100, return_features=True))
    _assert_same(results, _columns_answers(client, ticks[:700], 250, return_features=True), features=True)


def test_columns_from_a_frame_equal_per_tick(client):
    frame = simulate(1_200, seed=5)
    results = list(client.stream_signals(frame_to_protos(frame), model=MODEL, batch_size=1000))
    answers = list(client.stream_columns(frame_columns(frame, 300), model=MODEL))
    assert _assert_same(results, answers) == 0


def test_columns_and_batches_share_a_streams_state(client):
    frame = simulate(900, seed=6)
    protos = frame_to_protos(frame)
    results = list(client.stream_signals(protos, model=MODEL, batch_size=300))

    def requests():
        yield pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL))
        yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=protos[:300]))
        yield pb.StreamSignalsRequest(columns=columns_message(frame, 300, 600))
        yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=protos[600:]))

    responses = list(client.stub.StreamSignals(requests(), timeout=60))
    assert list(responses[0].results) == results[:300]
    _assert_same(results[300:600], [responses[1].columns])
    assert list(responses[2].results) == results[600:]


def test_columns_over_max_ticks_per_message_are_resource_exhausted(client):
    frame = simulate(10_001, seed=3)
    message = columns_message(frame)
    assert len(message.instrument_index) > 10_000
    with pytest.raises(grpc.RpcError) as exc:
        list(client.stream_columns([message], model=MODEL))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_ticks_per_message=10000" in exc.value.details()


def test_malformed_columns_end_the_call_naming_the_array(client):
    frame = simulate(20, seed=3)
    good = columns_message(frame)
    cases = []
    m = pb.TickColumns()
    m.CopyFrom(good)
    del m.last_price[-1]
    cases.append((m, "columns.last_price"))
    m = pb.TickColumns()
    m.CopyFrom(good)
    m.bid_size.append(1.0)
    cases.append((m, "columns.bid_size"))
    m = pb.TickColumns()
    m.CopyFrom(good)
    m.instrument_index[4] = 9
    cases.append((m, "columns.instrument_index[4]"))
    m = pb.TickColumns()
    m.CopyFrom(good)
    del m.sequence[3:]
    cases.append((m, "columns.sequence"))
    m = pb.TickColumns()
    m.CopyFrom(good)
    assert len(m.aggressor) == 20  # the simulated ticks carry sides
    del m.aggressor[-1]
    cases.append((m, "columns.aggressor"))
    m = pb.TickColumns()
    m.CopyFrom(good)
    m.aggressor.append(pb.SIDE_BUY)
    cases.append((m, "columns.aggressor"))
    for message, field in cases:
        with pytest.raises(grpc.RpcError) as exc:
            list(client.stream_columns([message], model=MODEL))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert exc.value.details().startswith(field + ":"), exc.value.details()
    assert exc.value.details() == "columns.aggressor: has 21 values, expected none or 20 (one per tick)"


def test_a_level_after_an_absent_one_is_a_per_tick_error(client):
    frame = simulate(60, seed=8)
    frame.bid_price[10, 3] = np.nan
    frame.bid_size[10, 3] = np.nan  # level 4 absent, level 5 present
    frame.ask_price[20, 9] = np.nan  # only the price: a present level with a bad price
    (cols,) = client.stream_columns([columns_message(frame)], model=MODEL)
    assert list(cols.error_index) == [10, 20]
    assert cols.errors[0].field == "bid_price[4]" and cols.errors[0].code == 3
    assert "after the first absent one" in cols.errors[0].message
    assert cols.errors[1].field == "ask_price[9]"
    assert cols.errors[1].message == "ask_price[9]: must be a price >= 1e-09 and < 1e+12, got nan"
    assert sum(c == 0 for c in cols.code) == 58


# --- in process ---------------------------------------------------------------------------


def test_decide_many_equals_decide_on_random_rows_ties_and_thresholds():
    rng = np.random.default_rng(0)
    rules = SignalRules()
    rows = []
    p = rng.dirichlet([1, 1, 1], size=20_000)
    rows.append(p)
    # exact thresholds: |edge| and confidence on each boundary, and ties between classes
    for edge in (rules.strong_edge, rules.medium_edge, rules.low_risk_edge, rules.medium_risk_edge):
        for conf in (rules.low_risk_confidence, rules.medium_risk_confidence, 0.5):
            rows.append(np.array([[conf - edge, 1 - 2 * conf + edge, conf], [conf, 1 - 2 * conf + edge, conf - edge]]))
    rows.append(
        np.array(
            [
                [1 / 3, 1 / 3, 1 / 3],
                [0.4, 0.4, 0.2],
                [0.2, 0.4, 0.4],
                [0.4, 0.2, 0.4],
                [0.5, 0.0, 0.5],
                [0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.3, 0.3, 0.4],
            ]
        )
    )
    q = rng.integers(0, 5, size=(5_000, 3)).astype(float)  # many ties on a coarse grid
    q[q.sum(axis=1) == 0] = 1.0
    rows.append(q / q.sum(axis=1, keepdims=True))
    probs = np.concatenate(rows)
    spread = rng.choice([0.0, 1.0, 2.0, 2.0000001, 3.0, 1.999999], size=len(probs))
    for r in (
        rules,
        SignalRules(
            strong_edge=0.2,
            medium_edge=0.1,
            aggressive_max_spread_ticks=1.0,
            low_risk_confidence=0.5,
            low_risk_edge=0.3,
            medium_risk_confidence=0.4,
            medium_risk_edge=0.1,
        ),
    ):
        many = decide_many(probs, spread, r)
        for i in range(len(probs)):
            one = decide(*map(float, probs[i]), float(spread[i]), r)
            got = (
                CLASSES[many.action[i]],
                float(many.confidence[i]),
                float(many.edge_score[i]),
                STRENGTHS[many.strength[i]],
                URGENCIES[many.urgency[i]],
                RISKS[many.risk[i]],
            )
            assert got == (one.action, one.confidence, one.edge_score, one.strength, one.urgency, one.risk), i


def _block(ticks):
    return tick_input.block_from_proto(columns_from_ticks(ticks))


def test_stream_checks_and_instrument_limit_equal_the_session(server, ticks):
    model = server.repository.get(MODEL, "")
    limits = SessionLimits(max_instruments=2)
    own = [tick_input.tick_from_proto(t) for t in ticks]
    for chunk in (1000, 64, 7):
        a = SignalSession(model, limits=limits)
        b = SignalSession(model, limits=limits)
        for start in range(0, len(own), chunk):
            expected = a.process(own[start : start + chunk])
            got = process_columns(b, _block(ticks[start : start + chunk]))
            admitted = got.admitted.tolist()
            assert admitted == [i for i, r in enumerate(expected) if isinstance(r, Scored)]
            for i, r in enumerate(expected):
                if not isinstance(r, Scored):
                    assert got.rejections[i] == r
            for j, i in enumerate(admitted):
                r = expected[i]
                assert tuple(got.probs[j].tolist()) == (r.signal.p_sell, r.signal.p_hold, r.signal.p_buy)
                assert tuple(got.raw[j].tolist()) == r.raw
                assert bool(got.warmed[j]) == r.warmed_up and int(got.gaps[j]) == r.sequence_gap
        assert a._last_ts == b._last_ts and a._last_seq == b._last_seq
        assert len(a.features) == len(b.features) == 2


class _Log:
    def __init__(self):
        self.rows = []

    def record(self, rows):
        self.rows.extend(rows)
        return True


def test_the_signal_log_gets_the_same_rows_from_columns(server, ticks):
    from tickserve.serving.recorder import Recorder

    model = server.repository.get(MODEL, "")
    per_tick, columnar = Recorder(signal_log=_Log()), Recorder(signal_log=_Log())
    a, b = SignalSession(model), SignalSession(model)
    for start in range(0, 900, 300):
        own = [tick_input.tick_from_proto(t) for t in ticks[start : start + 300]]
        per_tick.log(per_tick.message("StreamSignals", model, own, a.process(own), 0))
        block = _block(ticks[start : start + 300])
        columnar.log(columnar.columns("StreamSignals", model, block, process_columns(b, block), 0))
    strip = lambda rows: [r[1:-1] for r in rows]  # noqa: E731  (served_at and latency differ)
    assert len(per_tick.signal_log.rows) > 800
    assert strip(columnar.signal_log.rows) == strip(per_tick.signal_log.rows)


def test_an_empty_message_a_repeated_name_and_no_levels(client):
    frame = simulate(200, seed=9)
    message = columns_message(frame)
    # the dictionary lists every name twice; rows use both copies: still one instrument each
    names = list(message.instrument)
    k = len(names)
    message.instrument.extend(names)
    for i in range(0, len(message.instrument_index), 2):
        message.instrument_index[i] += k
    no_levels = pb.TickColumns(
        instrument=["A"], instrument_index=[0, 0], timestamp_ns=[1, 2], last_price=[0.0, 0.0], last_size=[0.0, 0.0]
    )
    results = list(client.stream_signals(frame_to_protos(frame), model=MODEL, batch_size=200))
    answers = list(client.stream_columns([pb.TickColumns(), message, no_levels], model=MODEL, return_features=True))
    assert len(answers[0].code) == 0 and len(answers[0].errors) == 0
    _assert_same(results, [answers[1]])
    assert list(answers[2].code) == [3, 3]
    assert answers[2].errors[0].message == "bid_price: needs at least one level, got none"
    assert len(answers[2].features) == 2 * len(client.get_model(MODEL).feature_names)


def _with_odd_ticks(ticks: list[pb.Tick]) -> list[pb.Tick]:
    """The ticks with, four times each, a tick no TickBlock can hold (a level whose price and size
    are both NaN; one more size than prices) and a tick without a sequence number, mixed in."""

    def edited(t: pb.Tick, edit) -> pb.Tick:
        out = pb.Tick()
        out.CopyFrom(t)
        edit(out)
        return out

    def both_nan(t):
        t.ask_price[0] = math.nan
        t.ask_size[0] = math.nan

    out = list(ticks)
    edits = [both_nan, lambda t: t.ClearField("sequence"), lambda t: t.ask_size.append(1.0)]
    for k, edit in enumerate(edits * 4):
        i = 100 + 150 * k
        out.insert(i, edited(out[i - 1], edit))
    return out


def test_a_tick_batch_taken_as_blocks_answers_as_tick_by_tick(server, ticks):
    """TickBatch messages go through the columnar path in runs (`blocks_from_ticks`); ticks a block
    cannot hold (a level with price and size both NaN, prices and sizes of different counts) and
    a change between ticks with and without a sequence number split the runs. Every answer, and
    the state left behind, equals the per-tick path's."""

    extra = _with_odd_ticks(ticks)
    parts = tick_input.blocks_from_ticks(extra)
    assert sum(isinstance(part, Tick) for _, part in parts) == 8 and len(parts) > 20
    model = server.repository.get(MODEL, "")
    own = [tick_input.tick_from_proto(t) for t in extra]
    for chunk in (1000, 61, 5):
        a, b = SignalSession(model), SignalSession(model)
        for start in range(0, len(extra), chunk):
            expected = a.process(own[start : start + chunk])
            got: dict[int, object] = {}
            for first, part in tick_input.blocks_from_ticks(extra[start : start + chunk]):
                if isinstance(part, Tick):
                    got[first] = b.process([part])[0]
                    continue
                results = process_columns(b, part)
                got.update({first + i: r for i, r in results.rejections.items()})
                for j, i in enumerate(results.admitted.tolist()):
                    got[first + i] = (tuple(results.probs[j].tolist()), tuple(results.raw[j].tolist()))
            assert sorted(got) == list(range(len(expected)))
            for i, r in enumerate(expected):
                if isinstance(r, Scored):
                    assert got[i] == ((r.signal.p_sell, r.signal.p_hold, r.signal.p_buy), r.raw), (chunk, start + i)
                else:
                    assert got[i] == r, (chunk, start + i)
        assert a._last_ts == b._last_ts and a._last_seq == b._last_seq


@pytest.mark.parametrize("return_features", [False, True], ids=["signals", "with-features"])
def test_a_tick_batch_is_answered_through_blocks_exactly_as_tick_by_tick(server, ticks, return_features):
    """StreamSignals answers a TickBatch through the columnar path: the TickResult messages are
    equal, field for field, to those the per-tick path builds (bad ticks, gaps, shallow books,
    ticks no block holds, ticks without a sequence number)."""
    from tickserve.serving.recorder import Recorder
    from tickserve.serving.routes import answer as _answer

    extra = _with_odd_ticks(ticks)
    model = server.repository.get(MODEL, "")
    a = SignalSession(model, return_features=return_features)
    b = SignalSession(model, return_features=return_features)
    for start in range(0, len(extra), 300):
        chunk = extra[start : start + 300]
        own = [tick_input.tick_from_proto(t) for t in chunk]
        expected = [converters.result_to_proto(r, t, model.name, model.version) for r, t in zip(a.process(own), own)]
        got = list(_answer(b, chunk, Recorder(), 0)[0].results)
        assert len(got) == len(expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g == e, (start + i, g, e)
    assert a._last_ts == b._last_ts and a._last_seq == b._last_seq
