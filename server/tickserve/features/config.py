"""What the feature stage needs to know besides the ticks: tick sizes and the session calendar.

A model's manifest stores its `FeatureConfig`; the server builds each stream's
feature state from the config of the model it serves, so a model is always
served the features it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .calendar import US_EQUITIES, SessionCalendar

DEFAULT_TICK_SIZE = 0.01
# Prices are validated into [1e-9, 1e12) (core/validation.py): with a tick size in this range a spread
# in ticks, snapped at 1e-6 tick, stays finite. A smaller one (5e-324 was seen in a manifest)
# would make every feature row inf or NaN, so a model declaring it must fail at load, not serve.
MIN_TICK_SIZE = 1e-12
MAX_TICK_SIZE = 1e12


@dataclass(frozen=True)
class FeatureConfig:
    default_tick_size: float = DEFAULT_TICK_SIZE
    # (instrument, tick size) pairs; a tuple so the config is hashable.
    tick_sizes: tuple[tuple[str, float], ...] = ()
    calendar: SessionCalendar = US_EQUITIES
    _lookup: dict = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        sizes = dict(self.tick_sizes)
        for name, size in [("(default)", self.default_tick_size), *sizes.items()]:
            if not MIN_TICK_SIZE <= size <= MAX_TICK_SIZE:  # NaN fails too
                raise ValueError(
                    f"tick size for {name} must be between {MIN_TICK_SIZE:g} and {MAX_TICK_SIZE:g}, got {size!r}"
                )
        object.__setattr__(self, "_lookup", sizes)

    def tick_size(self, instrument: str) -> float:
        return self._lookup.get(instrument, self.default_tick_size)

    def to_dict(self) -> dict:
        return {
            "default_tick_size": self.default_tick_size,
            "tick_sizes": dict(self.tick_sizes),
            "calendar": self.calendar.to_dict(),
        }

    @staticmethod
    def from_dict(d: dict) -> FeatureConfig:
        return FeatureConfig(
            default_tick_size=float(d.get("default_tick_size", DEFAULT_TICK_SIZE)),
            tick_sizes=tuple(sorted((str(k), float(v)) for k, v in d.get("tick_sizes", {}).items())),
            calendar=SessionCalendar.from_dict(d["calendar"]) if "calendar" in d else US_EQUITIES,
        )
