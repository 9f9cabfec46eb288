"""`tickserve serve` as a server-only install would run it: without the dashboard's pandas.

The repository's .venv also holds the dashboard (Streamlit, which needs pandas), and
lightgbm and xgboost import pandas at start-up whenever it is installed: about 60 MB
of resident memory the server never uses. A deployment of the server alone
(`pip install tickserve tickserve-lightgbm ...`) has no pandas; this wrapper makes
pandas unimportable so the memory benchmark can measure that too.

    python benchmarks/serve_server_only.py serve --models models --port 0
"""

import sys

sys.modules["pandas"] = None  # `import pandas` raises ImportError, as on a machine without it

from tickserve.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
