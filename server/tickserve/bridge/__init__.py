"""`tickserve bridge`: ticks in from a message broker, signals out to it, nothing lost or doubled.

One module per job: `transport.py` (the broker API a transport plugin implements), `nats_transport.py`
(the built-in NATS JetStream transport), `codec.py` (input bytes -> ticks, or a dead letter),
`engine.py` (ticks -> results through the StreamSignals functions, and their de-duplication ids),
`runner.py` (replay, then fetch -> answer -> publish -> acknowledge), `metrics.py` (/metrics),
`app.py` (settings -> a running bridge). Nothing here is imported by the server.
"""
