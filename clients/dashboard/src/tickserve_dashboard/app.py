"""The dashboard: `streamlit run clients/dashboard/src/tickserve_dashboard/app.py` (or `make dashboard`).

Server address, TLS and token come from the environment or a config file (see server_config.py);
the sidebar may point it at another address for this session.
"""

from __future__ import annotations

import grpc
import streamlit as st

from tickserve_dashboard import datalayer as dl
from tickserve_dashboard import tab_config, tab_features, tab_live, tab_performance
from tickserve_dashboard.server_config import ConfigError, load_settings
from tickserve_dashboard.widgets import Context, cached_client

TABS = ("Live Inference", "Model Performance", "Feature Analysis", "Configuration")


def context() -> Context:
    try:
        settings = load_settings()
    except ConfigError as e:
        st.error(f"Dashboard configuration: {e}")
        st.stop()
    with st.sidebar:
        st.title("tickserve")
        address = st.text_input(
            "Server",
            value=settings.server,
            key="server_address",
            help="host:port; TLS and token settings come from the environment/config",
        )
        settings = settings.with_server(address)
        st.caption(settings.describe())
        if st.button("Refresh", key="refresh"):
            pass  # any button press reruns the script: models are listed afresh
    try:
        client = cached_client(settings)
    except (ConfigError, ValueError) as e:
        return Context(settings, None, None, f"cannot create a client: {e}")
    try:
        catalog = dl.list_models(client)
    except grpc.RpcError as e:
        return Context(settings, client, None, f"ListModels: {dl.rpc_error_text(e)}")
    with st.sidebar:
        ready = catalog.ready()
        st.caption(
            f"{len(ready)} of {len(catalog.models)} model versions READY · default: {catalog.default_model or '—'}"
        )
    return Context(settings, client, catalog)


def main() -> None:
    st.set_page_config(page_title="tickserve dashboard", page_icon="📈", layout="wide")
    ctx = context()
    if ctx.catalog is None:
        st.error(f"Server {ctx.settings.server} not reachable: {ctx.error}")
    live, performance, features, configuration = st.tabs(list(TABS))
    with live:
        tab_live.render(ctx)
    with performance:
        tab_performance.render(ctx)
    with features:
        tab_features.render(ctx)
    with configuration:
        tab_config.render(ctx)


main()
