"""`tickserve demo`: end to end, train if needed, serve, stream, evaluate (tickserve/demo.py)."""

from __future__ import annotations


def cmd_demo(args) -> int:
    from ..demo import run_demo, run_real_demo

    if args.data is not None:
        return run_real_demo(
            args.data,
            instrument=args.instrument,
            tick_size=args.tick_size,
            calendar=args.calendar,
            show=args.show,
            models=args.data_models,
        )
    return run_demo(args.models, args.train_samples, args.holdout_samples, args.show, args.prepare_only)
