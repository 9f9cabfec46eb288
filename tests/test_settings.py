"""Settings precedence: defaults < config file < environment < command-line flags; bad values named."""

from __future__ import annotations

import tomllib

import pytest

from tickserve.settings import SCHEMA, load_settings


def test_defaults_are_secure_and_complete():
    s = load_settings(environ={})
    assert s["server"]["host"] == "127.0.0.1"  # loopback unless asked otherwise
    assert s["tls"]["cert"] == "" and s["auth"]["token_file"] == ""
    assert all(src == "default" for section in s.sources.values() for src in section.values())
    assert set(s.values) == set(SCHEMA)


def test_precedence_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "tickserve.toml"
    cfg.write_text(
        '[server]\nport = 6000\nhost = "0.0.0.0"\ngrace = 2\n[limits]\nmax_concurrent_streams = 8\n[plugins]\ndeny = ["onnx"]\n'
    )
    env = {"TICKSERVE_SERVER_PORT": "7000", "TICKSERVE_LIMITS_MAX_CONCURRENT_STREAMS": "16"}
    s = load_settings(cfg, environ=env, flags={("server", "port"): 8000})
    assert s["server"]["port"] == 8000 and s.sources["server"]["port"] == "flag"
    assert (
        s["limits"]["max_concurrent_streams"] == 16
        and s.sources["limits"]["max_concurrent_streams"] == "env TICKSERVE_LIMITS_MAX_CONCURRENT_STREAMS"
    )
    assert s["server"]["host"] == "0.0.0.0" and s.sources["server"]["host"] == f"file {cfg}"
    assert s["server"]["grace"] == 2.0 and isinstance(s["server"]["grace"], float)
    assert s["server"]["workers"] == 4 and s.sources["server"]["workers"] == "default"
    # the server reads them typed: one frozen dataclass per table, the same values
    assert s.server.port == 8000 and s.server.host == "0.0.0.0" and s.server.grace == 2.0
    assert s.limits.max_concurrent_streams == 16 and s.signal_log.enabled is True
    with pytest.raises(AttributeError):
        _ = s.server.prot  # a typo is an error, not a silent default


def test_config_file_from_the_environment(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[signal_log]\nenabled = false\n")
    s = load_settings(environ={"TICKSERVE_CONFIG": str(cfg)})
    assert s["signal_log"]["enabled"] is False
    assert s.file == cfg


def test_show_is_valid_toml_that_round_trips(tmp_path):
    s = load_settings(environ={"TICKSERVE_AUTH_HEALTH_REQUIRES_TOKEN": "yes", "TICKSERVE_TLS_CERT": 'a "b"'})
    text = s.to_toml()
    parsed = tomllib.loads(text)
    assert parsed["auth"]["health_requires_token"] is True
    assert parsed["tls"]["cert"] == 'a "b"'
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_settings(again, environ={}).values == s.values


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nprot = 1\n", "unknown key 'prot' in [server]"),
        ("[sever]\nport = 1\n", "unknown section [sever]"),
        ('[server]\nport = "x"\n', "[server] port must be an integer, got 'x'"),
        ('[logging]\nformat = "xml"\n', "[logging] format must be one of json, text, got 'xml'"),
        ("[limits]\nmax_concurrent_streams = 1.5\n", "[limits] max_concurrent_streams must be an integer, got 1.5"),
    ],
)
def test_bad_file_values_are_named(tmp_path, toml, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ValueError) as err:
        load_settings(cfg, environ={})
    assert message in str(err.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match=r"\$TICKSERVE_SERVER_PORT: \[server\] port must be an integer, got 'abc'"):
        load_settings(environ={"TICKSERVE_SERVER_PORT": "abc"})
