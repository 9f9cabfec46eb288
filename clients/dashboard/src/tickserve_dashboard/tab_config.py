"""Configuration: server health, the model repository (load / reload / unload), a model's signal rules,
and, when the server exposes one, a summary of its Prometheus /metrics endpoint."""

from __future__ import annotations

import urllib.error

import grpc
import streamlit as st

from . import datalayer as dl
from .widgets import Context, show_rpc_error

MESSAGE_KEY = "config_message"
ALL_VERSIONS = "all versions"


def _health(ctx: Context) -> None:
    st.markdown("#### Server")
    st.write(f"Address: `{ctx.settings.describe()}`")
    try:
        table = dl.health(ctx.settings)
    except Exception as e:  # noqa: BLE001 (a settings or channel problem: show it, keep the tab usable)
        st.error(f"Health check failed: {dl.rpc_error_text(e)}")
        return
    overall = table["status"].iloc[0] if len(table) else "UNKNOWN"
    (st.success if overall == "SERVING" else st.error)(f"Health (grpc.health.v1): {overall}")
    st.dataframe(table, hide_index=True, key="config_health")


def _metrics(ctx: Context) -> None:
    st.markdown("#### Server metrics")
    url = st.text_input(
        "Prometheus /metrics URL (optional)",
        value=ctx.settings.metrics_url,
        key="config_metrics_url",
        placeholder="http://127.0.0.1:8080/metrics",
    )
    if not url.strip():
        st.caption("Set TICKSERVE_METRICS_URL (or type the URL) when the server runs its HTTP gateway.")
        return
    try:
        summary = dl.metrics_summary(url.strip())
    except (urllib.error.URLError, OSError, ValueError) as e:
        st.warning(f"Could not read {url}: {e}")
        return
    if not len(summary):
        st.info("The endpoint answered but has no tickserve_* metrics.")
        return
    st.dataframe(summary, hide_index=True, key="config_metrics")


def _repository(ctx: Context) -> dl.ModelCatalog | None:
    st.markdown("#### Model repository")
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message:
        kind, text = message
        (st.success if kind == "ok" else st.error)(text)
    default = ctx.catalog.default_model if ctx.catalog is not None else ""
    try:
        index = dl.repository_index(ctx.client, default)
    except grpc.RpcError as e:
        show_rpc_error("RepositoryIndex", e)
        return None
    st.dataframe(index.models, hide_index=True, key="config_index")
    names = index.names(ready_only=False)
    if not names:
        st.info("The repository is empty.")
        return index
    a, b, c, d, e = st.columns([2, 2, 1, 1, 1], vertical_alignment="bottom")
    model = a.selectbox("Model", names, key="config_model")
    version = b.selectbox("Version", [ALL_VERSIONS, *index.versions(model, ready_only=False)], key="config_version")
    version = "" if version == ALL_VERSIONS else version
    for col, action in ((c, "load"), (d, "reload"), (e, "unload")):
        if col.button(action.capitalize(), key=f"config_{action}", width="stretch"):
            target = f"{model}" + (f" v{version}" if version else " (every version)")
            try:
                changed = dl.repository_action(ctx.client, action, model, version)
                states = ", ".join(f"v{r.version} {r.state}" for r in changed.itertuples()) or "no change"
                st.session_state[MESSAGE_KEY] = ("ok", f"{action.capitalize()} {target}: {states}")
            except grpc.RpcError as err:
                st.session_state[MESSAGE_KEY] = (
                    "error",
                    f"{action.capitalize()} {target} failed: {dl.rpc_error_text(err)}",
                )
            st.rerun()  # every tab's model list reflects the change
    return index


def _model(index: dl.ModelCatalog) -> None:
    st.markdown("#### Model details and signal rules")
    keys = sorted(index.infos, key=lambda k: (k[0], k[1]))
    if not keys:
        return
    label = {f"{m} v{v}": (m, v) for m, v in keys}
    chosen = st.selectbox("Model version", list(label), key="config_detail")
    details = dl.model_details(index.infos[label[chosen]])
    a, b, c, d = st.columns(4)
    a.metric("State", details["state"])
    b.metric("Adapter", details["adapter"] or "—")
    c.metric("Label horizon", details["label"]["horizon"])
    if details["label"]["mode"] == "taker":  # taker labels have no threshold: a move must pay the spread + cost
        d.metric("Label cost", f"spread + {details['label']['cost_ticks']:g} ticks")
    else:
        d.metric("Label threshold", f"{details['label']['threshold_ticks']:g} ticks")
    if details["state_reason"]:
        st.warning(details["state_reason"])
    st.markdown("**Signal-rule thresholds**")
    if len(details["signal_rules"]):
        st.dataframe(
            details["signal_rules"],
            hide_index=True,
            key="config_rules",
            column_config={"meaning": st.column_config.TextColumn(width="large")},
        )
    else:
        st.caption("No signal rules reported.")
    st.markdown("**Training metrics**")
    if len(details["metrics"]):
        st.dataframe(details["metrics"], hide_index=True, height=300, key="config_model_metrics")
    else:
        st.caption("None recorded for this model version.")
    with st.expander(f"Features ({len(details['feature_names'])}) and parameters"):
        st.write(", ".join(details["feature_names"]) or "—")
        st.dataframe(details["parameters"], hide_index=True, key="config_params")
        st.caption(
            f"classes {details['classes']} · feature stage v{details['feature_stage_version']} · "
            f"data {details['data_fingerprint'][:16]}…"
        )


def render(ctx: Context) -> None:
    st.subheader("Configuration")
    _health(ctx)
    if ctx.client is None:
        st.error(ctx.error)
        return
    index = _repository(ctx)
    if index is not None:
        _model(index)
    _metrics(ctx)
