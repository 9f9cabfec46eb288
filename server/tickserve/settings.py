"""The server's effective settings: defaults, then the TOML file, then the environment, then flags.

One precedence, documented in one place (later wins):

    1. the defaults below
    2. the config file: --config FILE, else $TICKSERVE_CONFIG
    3. environment variables TICKSERVE_<SECTION>_<KEY>, e.g. TICKSERVE_SERVER_PORT=50052
    4. command-line flags of `tickserve serve` (only those given on the command line)

`tickserve config show` prints the result as TOML with where each value came from.
Unknown sections or keys in the file are errors (a typo must not be silently ignored),
except sections other commands own ([plugins] is read by config.plugin_policy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tickserve_proto.contract import MAX_MESSAGE_BYTES

from .config import read_config

ENV_PREFIX = "TICKSERVE_"


@dataclass(frozen=True)
class Setting:
    default: Any
    kind: type
    help: str


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


# One typed section per TOML table: the sections are the schema (defaults, kinds from the
# annotations, help texts), and `Settings.server`, `.limits`, ... hand them to the server typed.
# Paths are kept as strings here; the server resolves them.
@dataclass(frozen=True)
class ServerSettings:
    models: str = _setting("models", "the model repository directory")
    host: str = _setting("127.0.0.1", "bind address; loopback by default, so nothing is exposed by accident")
    port: int = _setting(50051, "gRPC port (0 picks a free one)")
    http_port: int = _setting(-1, "HTTP/JSON gateway and /metrics port (-1: off, 0: a free one)")
    default_model: str = _setting("", "model used when a request names none")
    grace: float = _setting(5.0, "seconds in-flight calls get at shutdown")
    drain: float = _setting(
        0.0, "seconds between SIGTERM and the stop: health NOT_SERVING, still serving, so a balancer moves away"
    )
    workers: int = _setting(4, "worker threads (per process) for big messages and model calls")
    processes: int = _setting(
        1, 'server processes sharing the port, each its own event loop (0 or "auto": one per CPU core)'
    )


@dataclass(frozen=True)
class LimitsSettings:
    max_concurrent_streams: int = _setting(1_000, "StreamSignals + Evaluate calls open at once, server-wide")
    max_streams_per_connection: int = _setting(100, "calls open at once on one connection (more wait for one to end)")
    idle_timeout_s: float = _setting(3600.0, "a stream that sends nothing this long is ended (0: never)")
    max_ticks_per_message: int = _setting(10_000, "ticks in one message or Predict call")
    max_instruments_per_stream: int = _setting(10_000, "instruments one stream may track")
    max_instruments_total: int = _setting(
        200_000, "instruments all open streams may track together (~7.5 KB of memory each)"
    )
    max_message_bytes: int = _setting(MAX_MESSAGE_BYTES, "largest request or response message")
    batch_window_us: float = _setting(300.0, "micro-batching window across streams (0 disables it)")
    max_batch_rows: int = _setting(256, "largest micro-batch")
    max_parallel_messages: int = _setting(0, "messages worked on in worker threads at once (0: one per CPU core)")


@dataclass(frozen=True)
class TlsSettings:
    cert: str = _setting("", "server certificate chain (PEM); TLS is on when set")
    key: str = _setting("", "server private key (PEM)")
    client_ca: str = _setting("", "CA that signs client certificates; mutual TLS is on when set")


@dataclass(frozen=True)
class AuthSettings:
    token_file: str = _setting("", "bearer tokens, one per line; token auth is on when set (or $TICKSERVE_TOKENS)")
    health_requires_token: bool = _setting(False, "require the token for health checks too")


@dataclass(frozen=True)
class SignalLogSettings:
    enabled: bool = _setting(True, "write every served signal to SQLite")
    path: str = _setting(".tickserve/signals.db", "the SQLite file (WAL mode)")
    max_queued_rows: int = _setting(100_000, "rows waiting for the writer before new ones are dropped")
    durable: bool = _setting(
        False, "answer only once the answer's signals are committed: every answered signal survives a crash"
    )


@dataclass(frozen=True)
class LoggingSettings:
    level: str = _setting("warning", "debug, info, warning or error")
    format: str = _setting("text", "text or json (one JSON object per line)")


@dataclass(frozen=True)
class BridgeSettings:
    """`tickserve bridge`: ticks from a message broker through one in-process session, signals back to it."""

    transport: str = _setting("nats", "the bridge transport plugin (`tickserve plugins` lists them)")
    url: str = _setting("nats://127.0.0.1:4222", "the broker to connect to")
    input_stream: str = _setting("TICKS", "the stream holding the input subject (created when missing)")
    input_subject: str = _setting("tickserve.ticks", "where tick messages are published")
    durable: str = _setting("tickserve-bridge", "the durable consumer's name: the bridge's position in the input")
    encoding: str = _setting("columns", "input encoding of messages without a Tickserve-Encoding header")
    output_stream: str = _setting("SIGNALS", "the stream holding the signal and dead-letter subjects")
    output_subject: str = _setting("tickserve.signals", "where results are published")
    output: str = _setting("ticks", "ticks: one TickResult per tick; columns: one SignalColumns per TickColumns")
    output_format: str = _setting("proto", "proto (the contract's messages) or json (their JSON mapping)")
    dead_letter_subject: str = _setting("tickserve.dead", "where undecodable input goes, with its reason")
    model: str = _setting("", "model to serve (default: the repository's default or only model)")
    version: str = _setting("", "model version (default: the newest READY one)")
    features: bool = _setting(False, "signals carry the model's input features (StreamConfig.return_features)")
    max_in_flight: int = _setting(256, "input messages delivered and not yet acknowledged, at most")
    ack_wait_s: float = _setting(30.0, "seconds before the broker redelivers an unacknowledged input")
    dedup_window_s: float = _setting(120.0, "the output stream's de-duplication window (a restart must be sooner)")
    replay_messages: int = _setting(0, "input messages replayed at start to rebuild state (0: all retained)")
    max_ticks_per_message: int = _setting(10_000, "more ticks in one input message: a dead letter")
    metrics_port: int = _setting(-1, "/metrics port (-1: off, 0: a free one)")


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "limits": LimitsSettings,
    "tls": TlsSettings,
    "auth": AuthSettings,
    "signal_log": SignalLogSettings,
    "logging": LoggingSettings,
    "bridge": BridgeSettings,
}
_KINDS = {"str": str, "int": int, "float": float, "bool": bool}
# section -> key -> Setting, derived from the sections (config show, flags and the environment read it)
SCHEMA: dict[str, dict[str, Setting]] = {
    name: {f.name: Setting(f.default, _KINDS[f.type], f.metadata["help"]) for f in fields(section)}
    for name, section in SECTIONS.items()
}
OTHER_SECTIONS = {"plugins"}  # read elsewhere
# int settings that also take the word "auto", read as 0
AUTO_INTS = {("server", "processes")}
CHOICES = {
    ("logging", "level"): {"debug", "info", "warning", "error"},
    ("logging", "format"): {"text", "json"},
    ("bridge", "encoding"): {"tick", "batch", "columns", "request", "json"},
    ("bridge", "output"): {"ticks", "columns"},
    ("bridge", "output_format"): {"proto", "json"},
}


@dataclass
class Settings:
    values: dict[str, dict[str, Any]]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    file: Path | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def server(self) -> ServerSettings:
        return ServerSettings(**self.values["server"])

    @property
    def limits(self) -> LimitsSettings:
        return LimitsSettings(**self.values["limits"])

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(**self.values["tls"])

    @property
    def auth(self) -> AuthSettings:
        return AuthSettings(**self.values["auth"])

    @property
    def signal_log(self) -> SignalLogSettings:
        return SignalLogSettings(**self.values["signal_log"])

    @property
    def logging(self) -> LoggingSettings:
        return LoggingSettings(**self.values["logging"])

    @property
    def bridge(self) -> BridgeSettings:
        return BridgeSettings(**self.values["bridge"])

    def to_toml(self, *, with_sources: bool = True) -> str:
        lines = []
        if self.file is not None:
            lines.append(f"# config file: {self.file}")
        for section, keys in SCHEMA.items():
            lines.append(f"\n[{section}]")
            for key in keys:
                value = self.values[section][key]
                text = f"{key} = {_toml_value(value)}"
                if with_sources:
                    text = f"{text:<48} # {self.sources[section][key]}"
                lines.append(text)
        return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(section: str, key: str, value: Any, where: str) -> Any:
    setting = SCHEMA[section][key]
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                out = value
            elif isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                out = value.lower() in ("1", "true", "yes", "on")
            else:
                raise ValueError
        elif kind is int and (section, key) in AUTO_INTS and isinstance(value, str) and value.lower() == "auto":
            out = 0
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except (TypeError, ValueError):
        raise ValueError(f"{where}: [{section}] {key} must be {_KIND_NAMES[kind]}, got {value!r}") from None
    allowed = CHOICES.get((section, key))
    if allowed is not None and out not in allowed:
        raise ValueError(f"{where}: [{section}] {key} must be one of {', '.join(sorted(allowed))}, got {out!r}")
    return out


def load_settings(
    config_file: Path | None = None,
    *,
    flags: dict[tuple[str, str], Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """The effective settings; `flags` holds only the flags given on the command line."""
    environ = os.environ if environ is None else environ
    values = {s: {k: v.default for k, v in keys.items()} for s, keys in SCHEMA.items()}
    sources = {s: {k: "default" for k in keys} for s, keys in SCHEMA.items()}

    path = config_file or (Path(environ["TICKSERVE_CONFIG"]) if environ.get("TICKSERVE_CONFIG") else None)
    data = read_config(path) if path is not None else {}
    for section, table in data.items():
        if section in OTHER_SECTIONS:
            continue
        if section not in SCHEMA:
            raise ValueError(f"config file {path}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ValueError(f"config file {path}: {section} must be a table, got {table!r}")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ValueError(
                    f"config file {path}: unknown key {key!r} in [{section}] (known: {', '.join(SCHEMA[section])})"
                )
            values[section][key] = _coerce(section, key, value, f"config file {path}")
            sources[section][key] = f"file {path}"

    for section, keys in SCHEMA.items():
        for key in keys:
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name in environ:
                values[section][key] = _coerce(section, key, environ[name], f"${name}")
                sources[section][key] = f"env {name}"

    for (section, key), value in (flags or {}).items():
        values[section][key] = _coerce(section, key, value, "command line")
        sources[section][key] = "flag"
    return Settings(values, sources, path)
