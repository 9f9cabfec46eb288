"""The transport-free core: one tick's way from a validated tick to a signal.

`ticks.py` (the Tick and TickFrame types, tick files), `validation.py` (the rules a tick must
meet), `session.py` (one stream's state: admission, features, the model, the signal rules;
`SignalSession.process` for a few ticks in plain floats), `columnar.py` (the same for a block of
many ticks, over arrays, with the same bits), `signals.py` (probabilities -> action, strength,
urgency, risk), `calibration.py` (the temperature a model's probabilities are scaled by),
`tick_size.py` (a price grid's tick, inferred from the prices).
"""
