"""The one thing pyproject.toml cannot declare without setuptools' experimental table: the
compiled helpers, which `pip install` builds with gcc and the Python headers: the per-tick
feature step (server/tickserve/features/_kernel.c) and the temperature scaling of many rows
(server/tickserve/_temperature.c). No fused multiply-add and no fast-math: their values must
be the same doubles on every machine (the streaming == batch tests compare bits)."""

from setuptools import Extension, setup

EXACT = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11"]

setup(
    ext_modules=[
        Extension(
            "tickserve.features._kernel",
            sources=["server/tickserve/features/_kernel.c"],
            extra_compile_args=EXACT,
        ),
        Extension("tickserve._temperature", sources=["server/tickserve/_temperature.c"], extra_compile_args=EXACT),
    ]
)
