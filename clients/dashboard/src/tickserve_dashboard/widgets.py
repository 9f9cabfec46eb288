"""Inputs and helpers the tabs share: the server context, a model picker, a tick-source picker."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from tickserve_client import TickserveClient

from . import datalayer as dl
from .server_config import ServerSettings

NEWEST = "newest READY"


@dataclass
class Context:
    settings: ServerSettings
    client: TickserveClient | None
    catalog: dl.ModelCatalog | None  # ListModels; None when the server could not be reached
    error: str = ""  # why client/catalog is None


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_client(settings: ServerSettings) -> TickserveClient:
    """One channel per settings, shared by every session of this dashboard process."""
    return dl.make_client(settings)


def model_picker(ctx: Context, key: str, *, ready_only: bool = True) -> tuple[str, str] | None:
    """(model, version) chosen in two select boxes; version "" = the newest READY one."""
    if ctx.catalog is None:
        st.warning(f"No models: {ctx.error or 'the server is not reachable'}")
        return None
    names = ctx.catalog.names(ready_only)
    if not names:
        st.warning("The server has no READY model. Load one on the Configuration tab.")
        return None
    default = ctx.catalog.default_model if ctx.catalog.default_model in names else names[0]
    left, right = st.columns(2)
    model = left.selectbox(
        "Model",
        names,
        index=names.index(default),
        key=f"{key}_model",
        help=f"server default: {ctx.catalog.default_model or '—'}",
    )
    versions = [NEWEST, *ctx.catalog.versions(model, ready_only)]
    version = right.selectbox("Version", versions, key=f"{key}_version")
    return model, "" if version == NEWEST else version


def tick_source_input(key: str, *, default_n: int = 2_000, default_seed: int = 2) -> dl.TickSource:
    kind = st.radio(
        "Tick source",
        ["Simulator", "Tick file (Parquet or CSV)"],
        horizontal=True,
        key=f"{key}_source",
    )
    if kind == "Simulator":
        left, right = st.columns(2)
        n = left.number_input("Ticks", min_value=10, max_value=500_000, value=default_n, step=500, key=f"{key}_n")
        seed = right.number_input("Seed", min_value=0, max_value=2**31 - 1, value=default_seed, key=f"{key}_seed")
        return dl.TickSource("simulator", n=int(n), seed=int(seed))
    left, right = st.columns([3, 1])
    path = left.text_input("Tick file path", key=f"{key}_path", placeholder="data/ticks.parquet")
    limit = right.number_input("At most (0 = all)", min_value=0, value=0, step=1000, key=f"{key}_limit")
    return dl.TickSource("file", path=path, limit=int(limit))


def load_frame_or_error(source: dl.TickSource):
    try:
        return dl.load_frame(source)
    except (OSError, ValueError, KeyError) as e:
        st.error(f"Could not read the ticks ({source.describe()}): {e}")
        return None


def show_rpc_error(what: str, error: BaseException) -> None:
    st.error(f"{what} failed: {dl.rpc_error_text(error)}")
