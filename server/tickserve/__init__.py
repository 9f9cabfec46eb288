"""tickserve: order-book ticks in, trading signals out, over gRPC.

Entry points: the `tickserve` command (`tickserve.cli`), the server
(`tickserve.serving.app`), and for plugin authors `tickserve.plugin`.
"""

__version__ = "0.1.0"
