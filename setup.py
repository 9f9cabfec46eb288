"""The one thing pyproject.toml cannot declare without setuptools' experimental table: the
compiled per-tick feature step (server/tickserve/features/_kernel.c), which `pip install`
builds with gcc and the Python headers. No fused multiply-add and no fast-math: its rows must
be the same doubles on every machine (the streaming == batch tests compare bits)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tickserve.features._kernel",
            sources=["server/tickserve/features/_kernel.c"],
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c11"],
        )
    ]
)
