"""Where the server is and how to reach it: address, TLS and bearer token.

Read from the environment, then (for anything the environment leaves unset) from a TOML file named
by $TICKSERVE_DASHBOARD_CONFIG, table [dashboard]:

    TICKSERVE_SERVER        server   host:port (default 127.0.0.1:50051)
    TICKSERVE_TLS_CA        tls_ca   PEM file: CA to trust for the server's certificate (turns TLS on)
    TICKSERVE_TLS_CERT      tls_cert PEM file: client certificate chain, mutual TLS (with the key)
    TICKSERVE_TLS_KEY       tls_key  PEM file: the client certificate's private key
    TICKSERVE_TLS           tls      1/true: TLS with the system roots even without a CA file
    TICKSERVE_TOKEN         token    bearer token sent as `authorization: Bearer <token>`
    TICKSERVE_TOKEN_FILE    token_file  file whose first non-comment line is the token
    TICKSERVE_METRICS_URL   metrics_url optional Prometheus endpoint, e.g. http://127.0.0.1:8080/metrics
    TICKSERVE_TIMEOUT       timeout  seconds per call (default 600: long evaluations stream)

The same names as the `tickserve` CLI's client flags (--tls-ca, --tls-cert, --tls-key,
--token-file, $TICKSERVE_TOKEN). Certificates are passed to `TickserveClient` as PEM contents.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_SERVER = "127.0.0.1:50051"
CONFIG_ENV = "TICKSERVE_DASHBOARD_CONFIG"
_KEYS = {
    "server": "TICKSERVE_SERVER",
    "tls_ca": "TICKSERVE_TLS_CA",
    "tls_cert": "TICKSERVE_TLS_CERT",
    "tls_key": "TICKSERVE_TLS_KEY",
    "tls": "TICKSERVE_TLS",
    "token": "TICKSERVE_TOKEN",
    "token_file": "TICKSERVE_TOKEN_FILE",
    "metrics_url": "TICKSERVE_METRICS_URL",
    "timeout": "TICKSERVE_TIMEOUT",
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    """Hashable, so a client can be cached per settings."""

    server: str = DEFAULT_SERVER
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls: bool = False
    token: str = ""
    metrics_url: str = ""
    timeout: float = 600.0

    @property
    def secure(self) -> bool:
        return self.tls or bool(self.tls_ca or self.tls_cert)

    def with_server(self, server: str) -> ServerSettings:
        return replace(self, server=server.strip() or self.server)

    def describe(self) -> str:
        """One line for the UI; never shows the token."""
        parts = [self.server]
        if self.secure:
            parts.append("TLS" + (" (mutual)" if self.tls_cert else ""))
        else:
            parts.append("plaintext")
        if self.token:
            parts.append("bearer token")
        return " · ".join(parts)

    def client_kwargs(self) -> dict:
        """Keyword arguments for `TickserveClient` (PEM contents, not paths)."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TICKSERVE_TLS_CERT and TICKSERVE_TLS_KEY go together (mutual TLS)")
        return {
            "timeout": self.timeout,
            "root_certificates": _read(self.tls_ca, "TLS CA") if self.tls_ca else None,
            "certificate_chain": _read(self.tls_cert, "TLS certificate") if self.tls_cert else None,
            "private_key": _read(self.tls_key, "TLS key") if self.tls_key else None,
            "token": self.token or None,
            "tls": True if self.secure else None,
        }


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from e


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def read_token_file(path: str) -> str:
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"token file {path}: {e.strerror or e}") from e
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise ConfigError(f"token file {path}: no token in it")


def load_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from the environment, falling back to the config file, then the defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    config_path = env.get(CONFIG_ENV, "").strip()
    if config_path:
        try:
            with open(Path(config_path).expanduser(), "rb") as f:
                table = tomllib.load(f).get("dashboard", {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{CONFIG_ENV}={config_path}: {e}") from e
        unknown = set(table) - set(_KEYS)
        if unknown:
            raise ConfigError(f"{config_path}: unknown keys in [dashboard]: {', '.join(sorted(unknown))}")
        values.update(table)
    for key, var in _KEYS.items():
        if env.get(var, "").strip():
            values[key] = env[var].strip()
            if key == "token":
                values.pop("token_file", None)
            if key == "token_file":
                values.pop("token", None)
    token_file = values.pop("token_file", None)
    if token_file and not values.get("token"):
        values["token"] = read_token_file(str(token_file))
    settings = ServerSettings(
        server=str(values.get("server") or DEFAULT_SERVER),
        tls_ca=str(values.get("tls_ca") or ""),
        tls_cert=str(values.get("tls_cert") or ""),
        tls_key=str(values.get("tls_key") or ""),
        tls=_truthy(values.get("tls", False)),
        token=str(values.get("token") or ""),
        metrics_url=str(values.get("metrics_url") or ""),
        timeout=float(values.get("timeout") or 600.0),
    )
    settings.client_kwargs()  # fail early on unreadable files or a half mutual-TLS pair
    return settings
