"""`tickserve import`: wide order-book files (+ trades) -> the canonical tick file, on hand-written CSVs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from tickserve.core.ticks import read_metadata, read_parquet
from tickserve.core.validation import validate_tick
from tickserve.features import ALWAYS_OPEN, FEATURE_INDEX, FeatureConfig, batch_features
from tickserve.importer import ImportSettings, import_ticks, run_import

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]
T0 = 1_723_161_256_000_000_000
HEADER = "local_ts_ns,bid_px_1,bid_qty_1,bid_px_2,bid_qty_2,ask_px_1,ask_qty_1,ask_px_2,ask_qty_2"
# five book rows, 2 levels, prices on the 0.1 grid
BOOK = [
    (T0 + 100, 100.0, 5, 99.9, 7, 100.1, 3, 100.2, 4),
    (T0 + 200, 100.0, 6, 99.9, 7, 100.1, 3, 100.2, 4),
    (T0 + 300, 100.1, 2, 100.0, 6, 100.2, 4, 100.3, 9),
    (T0 + 300, 100.1, 3, 100.0, 6, 100.2, 4, 100.3, 9),
    (T0 + 500, 100.0, 1, 99.9, 7, 100.2, 8, 100.3, 9),
]
TRADES_HEADER = "local_ts_ns,price,qty,aggressor"
TRADES = [
    (T0 + 50, 100.1, 2, "buy"),  # before the first book row: no tick, price carried
    (T0 + 250, 100.1, 3, "buy"),
    (T0 + 300, 100.2, 1, "buy"),  # same timestamp as two book rows: comes first
    (T0 + 300, 100.1, 4, "sell"),
    (T0 + 600, 100.0, 5, "sell"),  # after the last book row: the last book carried
]


def write_csv(path, header, rows, opener=open):
    text = header + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    with opener(path, "wt") as f:
        f.write(text)
    return path


def settings(**changes):
    fields = dict(instrument="BTC", tick_size=0.1, calendar=ALWAYS_OPEN, mapping={"timestamp_ns": "local_ts_ns"})
    fields.update(changes)
    return ImportSettings(**fields)


@pytest.fixture
def files(tmp_path):
    return write_csv(tmp_path / "book.csv", HEADER, BOOK), write_csv(tmp_path / "trades.csv", TRADES_HEADER, TRADES)


def test_merge_order_last_price_and_sizes(files):
    frame, report = import_ticks(*files, settings())
    # order: book@100, book@200, trade@250, trade@300, trade@300, book@300, book@300, book@500, trade@600
    assert frame.timestamp_ns.tolist() == [T0 + t for t in (100, 200, 250, 300, 300, 300, 300, 500, 600)]
    assert frame.last_price.tolist() == [100.1, 100.1, 100.1, 100.2, 100.1, 100.1, 100.1, 100.1, 100.0]
    assert frame.last_size.tolist() == [0, 0, 3, 1, 4, 0, 0, 0, 5]
    # a trade carries the book before it: the trades at 300 still see the book of 200
    assert frame.bid_size[:, 0].tolist() == [5, 6, 6, 6, 6, 2, 3, 1, 1]
    assert frame.ask_price[:, 1].tolist() == [100.2, 100.2, 100.2, 100.2, 100.2, 100.3, 100.3, 100.3, 100.3]
    assert np.isnan(frame.bid_price[:, 2:]).all()  # only two levels in the file
    assert frame.sequence.tolist() == list(range(1, 10))
    assert set(frame.instrument.tolist()) == {"BTC"}
    assert report.trades_before_first_book == 1
    assert (report.ticks, report.book_ticks, report.trade_ticks, report.levels) == (9, 5, 4, 2)
    assert report.dropped == 0
    # each trade tick carries its own trade's side, a book tick none
    assert frame.aggressor.tolist() == [0, 0, 1, 1, -1, 0, 0, 0, -1]
    assert report.aggressor_column == "aggressor"
    assert report.trade_sides == {"buy": 2, "sell": 2, "unknown": 0}
    for tick in frame.ticks():
        validate_tick(tick)


def test_last_price_is_zero_before_the_first_trade(tmp_path):
    book = write_csv(tmp_path / "book.csv", HEADER, BOOK)
    frame, _ = import_ticks(book, None, settings())
    assert frame.last_price.tolist() == [0.0] * 5 and frame.last_size.tolist() == [0.0] * 5
    later = write_csv(tmp_path / "t.csv", TRADES_HEADER, [TRADES[2]])
    frame, _ = import_ticks(book, later, settings())
    assert frame.last_price.tolist() == [0.0, 0.0, 100.2, 100.2, 100.2, 100.2]


def test_vwap_counts_each_trade_exactly_once(files):
    frame, _ = import_ticks(*files, settings())
    # each imported trade appears once, with its own size
    assert (frame.last_price * frame.last_size).sum() == pytest.approx(100.1 * 3 + 100.2 * 1 + 100.1 * 4 + 100.0 * 5)
    assert frame.last_size.sum() == 3 + 1 + 4 + 5
    features = batch_features(frame, FeatureConfig(tick_sizes=(("BTC", 0.1),), calendar=ALWAYS_OPEN))
    vwap5, vwap50 = features[:, FEATURE_INDEX["vwap_5"]], features[:, FEATURE_INDEX["vwap_50"]]
    # by hand: the last 5 ticks (rows 4..8) hold the trades 100.1 x 4 and 100.0 x 5
    assert vwap5[8] == pytest.approx((100.1 * 4 + 100.0 * 5) / 9)
    # rows 0..4 (5 ticks) hold 100.1 x 3, 100.2 x 1, 100.1 x 4
    assert vwap5[4] == pytest.approx((100.1 * 3 + 100.2 + 100.1 * 4) / 8)
    assert vwap50[8] == pytest.approx((100.1 * 3 + 100.2 + 100.1 * 4 + 100.0 * 5) / 13)
    # no volume yet: the mid
    assert vwap5[1] == pytest.approx((100.0 + 100.1) / 2)


def test_mapping_gzip_and_parquet_give_the_same_ticks(tmp_path, files):
    reference, _ = import_ticks(*files, settings())
    # other column names: a {n} pattern for the levels, a trades-only mapping for the trades
    renamed = "t,bp1,bq1,bp2,bq2,ap1,aq1,ap2,aq2"
    book = write_csv(tmp_path / "other.csv.gz", renamed, BOOK, opener=gzip.open)
    trades = write_csv(tmp_path / "other_trades.csv", "when,px,size,side", TRADES)
    mapping = {
        "timestamp_ns": "t",
        "bid_px_{n}": "bp{n}",
        "bid_qty_{n}": "bq{n}",
        "ask_px_{n}": "ap{n}",
        "ask_qty_{n}": "aq{n}",
    }
    trades_mapping = {"timestamp_ns": "when", "price": "px", "qty": "size"}
    frame, report = import_ticks(book, trades, settings(mapping=mapping, trades_mapping=trades_mapping))
    assert report.aggressor_column == "" and not frame.aggressor.any()  # no side column: unknown sides
    assert report.trade_sides == {"buy": 0, "sell": 0, "unknown": 4}
    assert any("every trade's side is unknown" in line for line in report.lines())
    trades_mapping["aggressor"] = "side"
    frame, _ = import_ticks(book, trades, settings(mapping=mapping, trades_mapping=trades_mapping))
    assert frame.fingerprint() == reference.fingerprint()

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for src in files:
        pq.write_table(pacsv.read_csv(str(src)), str(src.with_suffix(".parquet")))
    frame, _ = import_ticks(files[0].with_suffix(".parquet"), files[1].with_suffix(".parquet"), settings())
    assert frame.fingerprint() == reference.fingerprint()
    # a Parquet timestamp column in ms, scaled by the unit
    table = pacsv.read_csv(str(files[0]))
    ms = pa.array([int(t) // 1_000_000 for t in table.column("local_ts_ns").to_pylist()])
    pq.write_table(table.set_column(0, "local_ts_ns", ms), str(tmp_path / "ms.parquet"))
    frame, _ = import_ticks(tmp_path / "ms.parquet", None, settings(timestamp_unit="ms"))
    assert (frame.timestamp_ns == (T0 // 1_000_000) * 1_000_000).all()


def test_each_bad_row_reason_is_counted_and_dropped(tmp_path):
    good = list(BOOK[0])
    rows = [good]

    def row(ts, **changes):
        r = list(good)
        r[0] = T0 + ts
        names = HEADER.split(",")
        for k, v in changes.items():
            r[names.index(k)] = v
        return r

    bad = {
        "missing_timestamp": [row(0, local_ts_ns="")],
        "unparseable_value": [row(110, bid_qty_1="lots")],
        "missing_level": [row(120, bid_px_1="", bid_qty_1=""), row(121, bid_px_2=""), row(122, ask_qty_1="")],
        "non_finite_value": [row(130, ask_px_2="inf"), row(131, bid_qty_2="nan")],
        "invalid_value": [row(140, bid_px_2=-1.0), row(141, ask_qty_1=-3)],
        "unordered_levels": [row(150, bid_px_2=100.0), row(151, ask_px_2=100.0)],
        "crossed_book": [row(160, bid_px_1=100.2, ask_px_1=100.1, ask_px_2=100.3)],
    }
    for reason_rows in bad.values():
        rows.extend(reason_rows)
    rows.append(row(400))  # good
    rows.append(row(300))  # earlier than the kept row before it
    rows.append(row(170, bid_px_1=100.05))  # earlier than the kept row at 400 too
    rows.append(row(500, bid_px_1=100.05))  # off the grid: kept, counted as a warning
    rows.append(row(600, ask_px_1=100.0))  # locked book: accepted, as the server accepts it
    book = write_csv(tmp_path / "bad.csv", HEADER, rows)
    trades = write_csv(
        tmp_path / "bad_trades.csv",
        TRADES_HEADER,
        [
            (T0 + 105, 100.1, 1, "buy"),
            (T0 + 95, 100.1, 1, "buy"),  # non-monotonic
            (T0 + 200, "", 1, "buy"),  # missing_value
            (T0 + 210, "x", 1, "buy"),  # unparseable_value
            (T0 + 220, "nan", 1, "buy"),  # non_finite_value
            (T0 + 230, 100.1, 0, "buy"),  # invalid_value: quantity 0
            ("", 100.1, 1, "buy"),  # missing_timestamp
            (T0 + 235, 100.1, 1, "long"),  # invalid_aggressor
            (T0 + 240, 100.1, 2, "buy"),
        ],
    )
    frame, report = import_ticks(book, trades, settings())
    expected = {reason: len(r) for reason, r in bad.items()}
    expected["non_monotonic_time"] = 2
    assert dict(report.book.dropped) == expected
    assert report.book.rows == len(rows) and report.book.kept == 4
    assert report.book.examples["missing_level"] == [4, 5, 6]  # data-row numbers
    assert dict(report.trades.dropped) == {
        reason: 1
        for reason in (
            "non_monotonic_time",
            "missing_value",
            "unparseable_value",
            "non_finite_value",
            "invalid_value",
            "missing_timestamp",
            "invalid_aggressor",
        )
    }
    assert report.trades.kept == 2
    assert report.off_grid_book_rows == 1
    assert not report.failed_validation
    assert len(frame) == 4 + 2
    for tick in frame.ticks():
        validate_tick(tick)
    lines = "\n".join(report.lines())
    assert "crossed_book" in lines and "non_monotonic_time" in lines and "off the tick-size grid" in lines


BIM_TRADES = [  # buyer_is_maker in every spelling the importer takes; true = a seller hit the bid
    (T0 + 110, 100.1, 1, "True"),
    (T0 + 120, 100.0, 1, "False"),
    (T0 + 130, 100.0, 1, "true"),
    (T0 + 140, 100.1, 1, "false"),
    (T0 + 150, 100.0, 1, "1"),
    (T0 + 160, 100.1, 1, "0"),
    (T0 + 170, 100.1, 1, ""),
]


def test_side_from_a_buyer_is_maker_column(tmp_path):
    book = write_csv(tmp_path / "book.csv", HEADER, BOOK)
    trades = write_csv(tmp_path / "bim.csv", "local_ts_ns,price,qty,buyer_is_maker", BIM_TRADES)
    frame, report = import_ticks(book, trades, settings())
    traded = frame.last_size > 0
    assert frame.aggressor[traded].tolist() == [-1, 1, -1, 1, -1, 1, 0]  # the empty cell: unknown
    assert not frame.aggressor[~traded].any()
    assert report.aggressor_column == "buyer_is_maker" and report.dropped == 0
    assert report.trade_sides == {"buy": 3, "sell": 3, "unknown": 1}
    # mapped from another column name; Parquet with a boolean column
    renamed = write_csv(tmp_path / "m.csv", "local_ts_ns,price,qty,maker_buys", BIM_TRADES)
    mapped, _ = import_ticks(book, renamed, settings(trades_mapping={"buyer_is_maker": "maker_buys"}))
    assert np.array_equal(mapped.aggressor, frame.aggressor)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "local_ts_ns": [t[0] for t in BIM_TRADES[:6]],
            "price": [t[1] for t in BIM_TRADES[:6]],
            "qty": [t[2] for t in BIM_TRADES[:6]],
            "buyer_is_maker": [True, False, True, False, True, False],
        }
    )
    pq.write_table(table, str(tmp_path / "bim.parquet"))
    from_parquet, _ = import_ticks(book, tmp_path / "bim.parquet", settings())
    assert from_parquet.aggressor[from_parquet.last_size > 0].tolist() == [-1, 1, -1, 1, -1, 1]


def test_aggressor_column_wins_over_buyer_is_maker_and_bad_sides_are_dropped_and_counted(tmp_path):
    book = write_csv(tmp_path / "book.csv", HEADER, BOOK)
    rows = [  # buyer_is_maker says the opposite on purpose: the aggressor column is the one read
        (T0 + 110, 100.1, 1, "true", "BUY"),
        (T0 + 120, 100.0, 1, "false", " sell "),
        (T0 + 130, 100.1, 1, "", "b"),
        (T0 + 140, 100.0, 1, "", "S"),
        (T0 + 150, 100.1, 1, "", "1"),
        (T0 + 160, 100.0, 1, "", "-1"),
        (T0 + 170, 100.1, 1, "true", ""),  # empty: unknown (0), kept
        (T0 + 180, 100.1, 1, "true", "up"),  # not a side: dropped
        (T0 + 190, 100.1, 1, "true", "0"),  # 0 is not one of the aggressor values
        (T0 + 195, "x", 1, "true", "up"),  # the first reason counts: unparseable price
    ]
    trades = write_csv(tmp_path / "both.csv", "local_ts_ns,price,qty,buyer_is_maker,aggressor", rows)
    frame, report = import_ticks(book, trades, settings())
    assert report.aggressor_column == "aggressor"
    assert frame.aggressor[frame.last_size > 0].tolist() == [1, -1, 1, -1, 1, -1, 0]
    assert dict(report.trades.dropped) == {"invalid_aggressor": 2, "unparseable_value": 1}
    assert report.trades.examples["invalid_aggressor"] == [8, 9] and report.trades.kept == 7
    assert report.trade_sides == {"buy": 3, "sell": 3, "unknown": 1}
    lines = "\n".join(report.lines())
    assert "invalid_aggressor" in lines and "aggressor side from column 'aggressor': 3 buy, 3 sell, 1 unknown" in lines
    for tick in frame.ticks():
        validate_tick(tick)
    # mapping only buyer_is_maker picks that column even though the file has an aggressor column
    bim, _ = import_ticks(book, trades, settings(trades_mapping={"buyer_is_maker": "buyer_is_maker"}))
    assert bim.aggressor[bim.last_size > 0].tolist() == [-1, 1, 0, 0, 0, 0, -1, -1, -1]
    # a side column mapped to a column the file does not have is named
    with pytest.raises(ValueError, match="no column 'taker' for aggressor.*--trades-map maps it to 'taker'"):
        import_ticks(book, trades, settings(trades_mapping={"aggressor": "taker"}))


def test_cli_import_reads_the_side_through_trades_map(tmp_path):
    book = write_csv(tmp_path / "book.csv", HEADER, BOOK)
    trades = write_csv(tmp_path / "t.csv", "local_ts_ns,price,qty,taker", TRADES)
    out = tmp_path / "ticks.parquet"
    result = subprocess.run(
        [
            *TICKSERVE,
            "import",
            "--book",
            str(book),
            "--trades",
            str(trades),
            "--out",
            str(out),
            "--instrument",
            "BTC",
            "--tick-size",
            "0.1",
            "--calendar",
            "24x7",
            "--map",
            "timestamp_ns=local_ts_ns",
            "--trades-map",
            "aggressor=taker",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "aggressor side from column 'taker': 2 buy, 2 sell, 0 unknown" in result.stdout
    frame = read_parquet(out)
    assert frame.aggressor.tolist() == [0, 0, 1, 1, -1, 0, 0, 0, -1]
    assert read_metadata(out)["import"]["trade_sides"] == {"buy": 2, "sell": 2, "unknown": 0}


def test_missing_columns_are_named(tmp_path, files):
    with pytest.raises(ValueError, match="no column 'timestamp_ns'.*--map timestamp_ns=COLUMN.*local_ts_ns"):
        import_ticks(files[0], None, settings(mapping={}))
    with pytest.raises(ValueError, match="no column 'px'.*--trades-map"):
        import_ticks(*files, settings(trades_mapping={"price": "px"}))
    with pytest.raises(ValueError, match="tick size"):
        settings(tick_size=0.0)
    with pytest.raises(ValueError, match="--levels 3"):
        import_ticks(files[0], None, settings(levels=3))
    frame, report = import_ticks(files[0], None, settings(levels=1))
    assert report.levels == 1 and np.isnan(frame.bid_price[:, 1]).all()


def test_output_file_records_the_instrument_settings(tmp_path, files):
    out = tmp_path / "ticks.parquet"
    report = run_import(*files, out, settings())
    frame = read_parquet(out)
    assert len(frame) == report.ticks == 9
    meta = read_metadata(out)
    assert meta["instruments"] == {"BTC": {"tick_size": 0.1, "calendar": ALWAYS_OPEN.to_dict()}}
    assert meta["import"]["trades_before_first_book"] == 1


def test_cli_import_with_a_config_table_then_train_reads_the_settings(tmp_path):
    """The [import] table and flags; then `tickserve train --data-file` takes tick size and calendar from the file."""
    from tickserve.simulate import simulate

    sim = simulate(2_400, seed=5)
    sim = sim.take(sim.instrument == "SIMA")
    names = (
        "ts,"
        + ",".join(f"{s}{n}" for n in (1, 2, 3) for s in ("bp", "bq"))
        + ","
        + ",".join(f"{s}{n}" for n in (1, 2, 3) for s in ("ap", "aq"))
    )
    rows = [
        [int(sim.timestamp_ns[i])]
        + [v for n in range(3) for v in (sim.bid_price[i, n], sim.bid_size[i, n])]
        + [v for n in range(3) for v in (sim.ask_price[i, n], sim.ask_size[i, n])]
        for i in range(len(sim))
    ]
    write_csv(tmp_path / "book.csv", names, rows)
    config = tmp_path / "tickserve.toml"
    config.write_text(
        f'[import]\nbook = "{tmp_path / "book.csv"}"\ninstrument = "SIMA"\ntick_size = 0.01\ncalendar = "24x7"\n'
        '[import.map]\ntimestamp_ns = "ts"\n"bid_px_{n}" = "bp{n}"\n"bid_qty_{n}" = "bq{n}"\n'
        '"ask_px_{n}" = "ap{n}"\n"ask_qty_{n}" = "aq{n}"\n'
    )
    out = tmp_path / "imported.parquet"
    result = subprocess.run(
        [*TICKSERVE, "import", "--config", str(config), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: {len(sim)} ticks of SIMA" in result.stdout and "0 rows dropped" in result.stdout
    assert "3 levels per side" in result.stdout

    models = tmp_path / "models"
    result = subprocess.run(
        [
            *TICKSERVE,
            "train",
            "--data-file",
            str(out),
            "--models",
            str(models),
            "--name",
            "m",
            "--param",
            "num_boost_round=3",
            "--horizon-time",
            "2s",
            "--label",
            "mid",
            "--threshold",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "instrument settings recorded in" in result.stdout and "calendar 24x7" in result.stdout
    assert "walk-forward, 3 folds" in result.stdout and "majority" in result.stdout
    manifest = json.loads((models / "m" / "1" / "manifest.json").read_text())
    assert manifest["feature_config"]["tick_sizes"] == {"SIMA": 0.01}
    assert manifest["feature_config"]["calendar"]["name"] == "24x7"
    assert manifest["label_config"] == {"horizon_ns": 2_000_000_000, "threshold_ticks": 1.0}
    assert "test_baseline_last_move_macro_f1" in manifest["metrics"]

    result = subprocess.run(
        [
            *TICKSERVE,
            "import",
            "--book",
            str(tmp_path / "book.csv"),
            "--out",
            str(out),
            "--instrument",
            "X",
            "--tick-size",
            "0.01",
            "--calendar",
            "always-open",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "24x7" in result.stderr  # names the calendars that exist


def test_imports_the_wide_csv_that_tickserve_simulate_writes(tmp_path):
    """One CSV layout (issue 15): the file `tickserve simulate --out x.csv` writes for the Node client
    and the dashboard is also an import's book file, its columns read under their own names."""
    from tickserve.core.tick_csv import write_csv as write_wide_csv
    from tickserve.simulate import simulate

    sim = simulate(300, seed=6)
    one = sim.take(np.flatnonzero(sim.instrument == sim.instrument[0]))
    path = write_wide_csv(one, tmp_path / "wide.csv")
    frame, report = import_ticks(path, None, settings(instrument=str(one.instrument[0]), tick_size=None, mapping={}))
    assert report.dropped == 0 and len(frame) == len(one) > 50
    assert frame.timestamp_ns.tolist() == one.timestamp_ns.tolist()
    for side in ("bid_price", "bid_size", "ask_price", "ask_size"):
        np.testing.assert_array_equal(getattr(frame, side), getattr(one, side), err_msg=side)
