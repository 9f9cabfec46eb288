"""Scoring signals against what the market did next, for training and for the Evaluate RPC.

`labels.py` (the BUY/HOLD/SELL label of a tick: the move over its horizon against its spread),
`trading.py` (one-position round trips paying the spread and fees), `metrics.py` (classification
metrics), `baselines.py` (the naive rules every model is compared with), `evaluate.py`
(`Evaluation`: the Evaluate RPC's report, message by message), `scored_ticks.py` (its input
contract), `pnl_series.py` (the report's P&L curve), `span.py` (which ticks of a file a model
was not trained on).
"""
