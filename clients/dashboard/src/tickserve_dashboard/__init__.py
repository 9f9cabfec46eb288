"""tickserve-dashboard: a Streamlit UI that is a plain client of a tickserve gRPC server.

Every number it shows comes from the server through `tickserve_client` (StreamSignals, Evaluate,
ListModels, GetModel, the repository service, gRPC health). From the core `tickserve`
distribution it imports only the tick simulator and the tick-file reader: never adapters,
never a model.

Modules: `server_config` (address, TLS and token from the environment or a TOML file),
`datalayer` (server calls and tick sources -> plain Python / pandas), `report_fields`
(EvaluationReport -> tables, read defensively so newer report fields show up when present),
`figures` (Plotly figures), one `tab_*` module per tab, `widgets` (shared inputs) and `app`
(the Streamlit script: `streamlit run .../tickserve_dashboard/app.py`).
"""

__version__ = "0.1.0"
