"""`tickserve evaluate --span`: given the file a model was trained on, only its held-out test span is scored."""

from __future__ import annotations

import numpy as np
import pytest

from tickserve.evaluation.span import choose_span
from tickserve.features import MAX_LOOKBACK
from tickserve.simulate import simulate

from .conftest import MODEL


@pytest.fixture(scope="module")
def trained_on():
    return simulate(20_000, seed=12)  # the ticks signal-lgbm/2 was trained on (tests/conftest.py)


def test_the_training_file_is_recognised_and_only_its_test_span_scored(client, trained_on):
    info = client.get_model(MODEL, "2")
    span = choose_span(trained_on, [info], "test")
    start = info.training_spans.test_start_ns
    assert span.score_from_ns == start
    scored = span.frame.timestamp_ns >= start
    assert scored.sum() == (trained_on.timestamp_ns >= start).sum()  # every held-out tick
    # warm-up: per instrument, the ticks the features and the horizon look back on, no more
    lookback = max(MAX_LOOKBACK, info.label_config.horizon_ticks)
    for name in np.unique(trained_on.instrument):
        assert (span.frame.instrument[~scored] == name).sum() == lookback
    assert "held-out test span of signal-lgbm/2" in span.message and "warm-up" in span.message
    everything = choose_span(trained_on, [info], "all")
    assert everything.score_from_ns == 0 and len(everything.frame) == len(trained_on)
    assert everything.message.startswith("warning:") and "flatter the model" in everything.message


def test_another_file_over_the_same_hours_is_scored_whole(client):
    info = client.get_model(MODEL, "2")
    other = simulate(20_000, seed=99)  # same instruments and hours, other ticks
    span = choose_span(other, [info], "test")
    assert (span.score_from_ns, span.message, len(span.frame)) == (0, "", len(other))


def test_a_file_with_nothing_after_the_training_span_is_refused_for_span_test(client, trained_on):
    info = client.get_model(MODEL, "2")
    early = trained_on.take(trained_on.timestamp_ns < info.training_spans.test_start_ns)
    with pytest.raises(ValueError, match="--span all"):
        choose_span(early, [info], "test")
    with pytest.raises(ValueError, match="test or all"):
        choose_span(early, [info], "train")


def test_the_served_evaluate_scores_only_ticks_from_score_from_ns(client, trained_on):
    info = client.get_model(MODEL, "2")
    span = choose_span(trained_on, [info], "test")
    from tickserve.serving.converters import frame_to_protos
    from tickserve_proto.v1 import tickserve_pb2 as pb

    def requests():
        yield pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL, score_from_ns=span.score_from_ns))
        ticks = frame_to_protos(span.frame)
        for start in range(0, len(ticks), 1_000):
            yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[start : start + 1_000]))

    report = [r.report for r in client.stub.Evaluate(requests()) if r.WhichOneof("payload") == "report"][0]
    scored = int((span.frame.timestamp_ns >= span.score_from_ns).sum())
    assert (report.ticks, report.warmup_ticks) == (scored, len(span.frame) - scored)
    assert sum(report.action_counts.values()) == scored
    # the training report's test span scores, reproduced over the wire
    assert report.macro_f1 == pytest.approx(info.metrics["test_macro_f1"], abs=1e-12)
    assert report.labeled == info.metrics["test_count"]
