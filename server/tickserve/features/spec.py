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

Order flow (version 2), per tick of an instrument (depth_l1 = (qb_1 + qa_1) / 2,
the mean level-1 depth; b_1, a_1 the best bid and ask):

- signed volume sv = side x last_size, side = the tick's aggressor (+1 buy,
  -1 sell) or, when unknown, the quote rule: last >= a_1 is +1, last <= b_1 is
  -1, else the sign of last - mid; 0 when last_size is 0;
- trade = 1 when last_size > 0, else 0;
- tick_interval_s = seconds since the instrument's previous tick (0 for its
  first); since_trade_s = seconds since the newest trade among its last
  MAX_LOOKBACK ticks (this one included: 0 on a trade), or, with none, since
  the oldest of those ticks (the features only ever look MAX_LOOKBACK ticks back,
  so a stream resumed after MAX_LOOKBACK ticks of warm-up computes them exactly);
  time differences are taken in integer ns, then divided by 1e9.
- per lookback L (c = min(ticks so far, L), span = seconds from the oldest of
  the window's c ticks to this one): trade_flow_L = sum sv / sum
  last_size (0 without volume); trade_flow_depth_L = sum sv / (sum depth_l1 / c);
  a flow over a mean depth is 0 when that mean is 0 and is clamped to
  +-MAX_PER_DEPTH (a near-empty book must not make it infinite);
  trade_rate_L = trades / max(span, 0.001) and tick_interval_mean_L =
  span / (c - 1), both 0 while c < 2.

Warm-up: until an instrument has L ticks, a window-L statistic is taken over
all of its ticks so far (the current one included), return_L is measured
from its first tick, and the 1-tick return of its first tick is 0. One
implementation computes all of this for every path (`_kernel.c`'s per-tick step,
summing each window from the newest tick to the oldest): streaming, big messages,
columns and training get the same bits.
"""

FEATURE_STAGE_VERSION = "2"
# Stage versions whose every feature this stage computes with the same formula, bit for bit
# (version 2 only adds features): models trained with them are served unchanged.
COMPATIBLE_STAGE_VERSIONS = frozenset({"1", "2"})
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
    "tick_interval_s",
    "since_trade_s",
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
    "trade_flow",
    "trade_flow_depth",
    "trade_rate",
    "tick_interval_mean",
)
FEATURE_NAMES: tuple[str, ...] = BASE_FEATURES + tuple(
    f"{name}_{lookback}" for lookback in LOOKBACKS for name in WINDOW_FEATURES
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Features in price units depend on the instrument's price level (spread_pct too: a
# constant spread in ticks is a smaller share of a higher price, so it tracks the level);
# a model generalises to a later span or another instrument better without them, so the
# default training set leaves them out (they are still computed and can be chosen with
# `tickserve train --features`).
PRICE_LEVEL_FEATURES = frozenset({"microprice", "spread", "spread_pct"} | {f"vwap_{lb}" for lb in LOOKBACKS})
# The session calendar's features: a clock unless the training ticks span several sessions
# (`training.default_features` decides).
SESSION_FEATURES = ("session_open", "minutes_since_open", "minutes_to_close")
DEFAULT_MODEL_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in PRICE_LEVEL_FEATURES)


def missing_features(names) -> list[str]:
    """The names the feature stage cannot produce (empty when all are known)."""
    return [n for n in names if n not in FEATURE_INDEX]


MIN_SPAN_S = 0.001
NS_PER_S = 1e9
MAX_PER_DEPTH = 1e9
