"""The feature vector: names, order and version, shared by every path.

Bump FEATURE_STAGE_VERSION whenever a formula changes: a model records the
version it was trained with and the server refuses to serve it with another.

Definitions (T = the instrument's tick size, mid = (ask_1 + bid_1) / 2,
last = last_price, or mid when last_price is 0):

- spread_ticks = (ask_1 - bid_1) / T snapped to the nearest 1e-6 tick
  (floor(x * 1e6 + 0.5) / 1e6), so that float noise in prices such as
  100.02 - 100.01 still counts as exactly one tick; spread = spread_ticks * T;
  spread_pct = spread / mid. (Unsnapped, models split on that noise, which
  differs by price level and does not survive a float32 export.)
- imbalance_lN = (sum bid sizes - sum ask sizes) / (their total) over the
  first N levels (fewer if fewer given); 0 when both are empty
- microprice = (bid_1 * ask_size_1 + ask_1 * bid_size_1) / (bid_size_1 + ask_size_1)
  (mid when both sizes are 0); *_vs_mid_ticks / *_vs_last_ticks: difference in ticks
- session_open (1/0), minutes_since_open, minutes_to_close: in the calendar's
  time zone, against today's open and close (negative outside the session)
- per lookback L in 5, 10, 20, 50 ticks of the same instrument:
  spread_ticks_mean_L, spread_ticks_std_L (population std, computed on
  values shifted by the newest one: a flat window gives exactly 0),
  spread_range_pos_L = (spread_ticks - min) / (max - min) (0.5 when flat),
  imbalance_momentum_L = imbalance_l1 - mean(imbalance_l1),
  vwap_L = sum(last * last_size) / sum(last_size) (mid when no volume),
  last_vs_vwap_ticks_L = (last - vwap_L) / T,
  return_L = mid / mid L ticks ago - 1,
  volatility_L = population std of 1-tick returns mid_t / mid_(t-1) - 1,
  price_range_pos_L = (mid - min mid) / (max mid - min mid), both differences
  in ticks snapped to 1e-6 tick (0.5 when flat).

Warm-up: until an instrument has L ticks, a window-L statistic is taken over
all of its ticks so far (the current one included), return_L is measured
from its first tick, and the 1-tick return of its first tick is 0. Both the
streaming and the batch path implement exactly this, and sum each window
from the newest tick to the oldest, so they agree to the last bit.
"""

FEATURE_STAGE_VERSION = "1"
LOOKBACKS = (5, 10, 20, 50)
MAX_LOOKBACK = max(LOOKBACKS)

BASE_FEATURES = (
    "spread",
    "spread_pct",
    "spread_ticks",
    "imbalance_l1",
    "imbalance_l5",
    "imbalance_l10",
    "microprice",
    "microprice_vs_mid_ticks",
    "microprice_vs_last_ticks",
    "session_open",
    "minutes_since_open",
    "minutes_to_close",
)
WINDOW_FEATURES = (
    "spread_ticks_mean",
    "spread_ticks_std",
    "spread_range_pos",
    "imbalance_momentum",
    "vwap",
    "last_vs_vwap_ticks",
    "return",
    "volatility",
    "price_range_pos",
)
FEATURE_NAMES: tuple[str, ...] = BASE_FEATURES + tuple(
    f"{name}_{lookback}" for lookback in LOOKBACKS for name in WINDOW_FEATURES
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Features in price units depend on the instrument's price level; a model
# trained on several instruments generalises better without them, so the
# default training set leaves them out (they are still computed and can be
# chosen with `tickserve train --features`).
PRICE_LEVEL_FEATURES = frozenset({"microprice"} | {f"vwap_{lb}" for lb in LOOKBACKS})
DEFAULT_MODEL_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in PRICE_LEVEL_FEATURES)


def missing_features(names) -> list[str]:
    """The names the feature stage cannot produce (empty when all are known)."""
    return [n for n in names if n not in FEATURE_INDEX]


def row_features(spread, mid, spread_ticks, imb1, imb5, imb10, micro, last, T, session, since_open, to_close) -> list:
    """The per-tick (non-window) features, in FEATURE_NAMES order, from floats (streaming) or
    arrays (batch): one formula for both paths, so they agree to the last bit."""
    return [
        spread,
        spread / mid,
        spread_ticks,
        imb1,
        imb5,
        imb10,
        micro,
        (micro - mid) / T,
        (micro - last) / T,
        session,
        since_open,
        to_close,
    ]
