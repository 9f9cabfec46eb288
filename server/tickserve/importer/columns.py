"""Reading the input files: column names, the `--map` expansion, and columns read with pyarrow as numbers
(lenient where text is where a number belongs) or as aggressor sides; which side column a trades file has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.ticks import MAX_LEVELS
from .settings import SIDE_VALUES


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def column_names(path: Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if _is_parquet(path):
        import pyarrow.parquet as pq

        return list(pq.read_schema(str(path)).names)
    import pyarrow.csv as pacsv

    with pacsv.open_csv(str(path)) as reader:
        return list(reader.schema.names)


def expand_mapping(mapping: dict[str, str]) -> dict[str, str]:
    """`{n}` in a key (and its value) stands for the level 1..MAX_LEVELS."""
    out = {}
    for key, value in mapping.items():
        if "{n}" in key:
            for n in range(1, MAX_LEVELS + 1):
                out[key.replace("{n}", str(n))] = value.replace("{n}", str(n))
        else:
            out[key] = value
    return out


@dataclass
class _Column:
    values: np.ndarray  # float64 or int64; 0 / NaN where null or unparseable
    null: np.ndarray  # bool
    unparseable: np.ndarray  # bool


def _lenient(strings: list, integer: bool) -> _Column:
    n = len(strings)
    values = np.zeros(n, dtype=np.int64) if integer else np.full(n, np.nan)
    null = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    for i, s in enumerate(strings):
        if s is None or (isinstance(s, str) and not s.strip()):
            null[i] = True
            continue
        try:
            if integer:
                if isinstance(s, float) and not s.is_integer():
                    raise ValueError("not an integer: the fraction would be cut off")
                values[i] = int(s)
            else:
                values[i] = float(s)
        except (TypeError, ValueError, OverflowError):
            bad[i] = True
    return _Column(values, null, bad)


def _from_arrow(col, integer: bool) -> _Column:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if pa.types.is_timestamp(col.type) and integer:
        unit = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[col.type.unit]
        col = pc.multiply(pc.cast(col, pa.int64()), unit)  # to ns: the unit flag then applies as ns
    target = pa.int64() if integer else pa.float64()
    null = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    try:
        cast = pc.cast(col, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _lenient(col.to_pylist(), integer)
    fill = 0 if integer else np.nan
    values = np.asarray(cast.fill_null(fill).to_numpy(zero_copy_only=False), dtype=np.int64 if integer else np.float64)
    return _Column(values, null, np.zeros(len(values), dtype=bool))


def _side_column(col, values: dict[str, int]) -> _Column:
    """A side column as +1 / -1 (0 where empty); cells that are none of `values` are `unparseable`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string())))
    codes = text.dictionary_encode()  # each distinct cell looked up once
    table = [values.get(v) for v in codes.dictionary.to_pylist()]
    empty = [v == "" for v in codes.dictionary.to_pylist()]
    index = np.asarray(codes.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    null = index < 0
    known = np.array([t is not None for t in table] + [True], dtype=bool)  # [-1]: null
    side = np.array([t or 0 for t in table] + [0], dtype=np.int8)
    null |= np.array(empty + [True], dtype=bool)[index]
    return _Column(side[index], null, ~known[index] & ~null)


def read_columns(
    path: Path, wanted: dict[str, str], integer: set[str], sides: dict[str, dict[str, int]] | None = None
) -> tuple[dict[str, _Column], int]:
    """{canonical: column} read from `path` (`wanted`: canonical -> column name in the file); row count.
    `sides`: canonical -> cell text -> side, for the side columns read as text (`_side_column`)."""
    import pyarrow as pa

    sides = sides or {}
    sources = list(dict.fromkeys(wanted.values()))
    int_sources = {wanted[c] for c in integer}
    text_sources = {wanted[c] for c in sides}
    if _is_parquet(path):
        import pyarrow.parquet as pq

        table = pq.read_table(str(path), columns=sources)
    else:
        import pyarrow.csv as pacsv

        def read(types: dict) -> pa.Table:
            return pacsv.read_csv(
                str(path),
                convert_options=pacsv.ConvertOptions(
                    include_columns=sources,
                    column_types=types,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )

        def kind(s: str):
            return pa.string() if s in text_sources else pa.int64() if s in int_sources else pa.float64()

        try:
            table = read({s: kind(s) for s in sources})
        except pa.ArrowInvalid:  # text where a number belongs: read as text, count those rows
            table = read({s: pa.string() for s in sources})
    out = {}
    for c, s in wanted.items():
        col = table.column(s)
        out[c] = _side_column(col, sides[c]) if c in sides else _from_arrow(col, s in int_sources)
    return out, table.num_rows


def _missing_column(path: Path, canonical: str, source: str, names: list[str], flag: str) -> ValueError:
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    how = f"map it with {flag} {canonical}=COLUMN" if source == canonical else f"{flag} maps it to {source!r}"
    return ValueError(f"{path}: no column {source!r} for {canonical} ({how}); the file has: {shown}")


def _side_source(path: Path, tmap: dict[str, str], names: list[str]) -> tuple[str, str] | None:
    """(canonical, column) of the trades file's side column: `aggressor` if the file has it, else
    `buyer_is_maker`, else None; but when only `buyer_is_maker` is mapped (--trades-map), that one.
    A column mapped explicitly must exist."""
    found = []
    for canonical in SIDE_VALUES:
        source = tmap.get(canonical, canonical)
        if source in names:
            found.append((canonical, source))
        elif canonical in tmap:
            raise _missing_column(path, canonical, source, names, "--trades-map")
    mapped = [f for f in found if f[0] in tmap]
    return (mapped or found or [None])[0]
