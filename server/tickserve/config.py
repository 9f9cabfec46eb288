"""The configuration file (TOML), read with the standard library's tomllib.

Only what the command needs is read; unknown tables are left for other
commands. Today: the plugin allow/deny lists.

    [plugins]
    allow = ["lightgbm", "xgboost"]   # load only these entry-point plugins (absent = all)
    deny = ["onnx"]                    # never load these

Precedence: command-line flags, then the file named by --config, then the
file named by $TICKSERVE_CONFIG.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "TICKSERVE_CONFIG"


@dataclass(frozen=True)
class PluginPolicy:
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()


def read_config(path: Path | None) -> dict:
    path = path or (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path}: {exc}") from None


def plugin_policy(config: dict, allow: list[str] | None, deny: list[str] | None) -> PluginPolicy:
    section = config.get("plugins", {})
    for key in ("allow", "deny"):
        value = section.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"config [plugins] {key}: expected a list of plugin names, got {value!r}")
    unknown = sorted(set(section) - {"allow", "deny"})
    if unknown:
        raise ValueError(f"config [plugins]: unknown key(s) {', '.join(unknown)} (known: allow, deny)")
    allowed = allow if allow is not None else section.get("allow")
    return PluginPolicy(
        allow=frozenset(allowed) if allowed is not None else None,
        deny=frozenset(section.get("deny", [])) | frozenset(deny or []),
    )
