"""The TOML config file: plugin allow/deny lists, and their precedence under command-line flags."""

from __future__ import annotations

import pytest

from tickserve.config import plugin_policy, read_config


def test_config_file_lists_and_flag_precedence(tmp_path, monkeypatch):
    path = tmp_path / "tickserve.toml"
    path.write_text('[plugins]\nallow = ["lightgbm", "onnx"]\ndeny = ["onnx"]\n')
    config = read_config(path)
    assert plugin_policy(config, None, None).allow == {"lightgbm", "onnx"}
    assert plugin_policy(config, None, None).deny == {"onnx"}
    assert plugin_policy(config, ["xgboost"], ["lightgbm"]).allow == {"xgboost"}  # the flag replaces allow
    assert plugin_policy(config, None, ["lightgbm"]).deny == {"onnx", "lightgbm"}  # deny lists add up
    monkeypatch.setenv("TICKSERVE_CONFIG", str(path))
    assert read_config(None) == config


@pytest.mark.parametrize(
    "text, message",
    [
        ('[plugins]\nallow = "x"\n', "allow: expected a list"),
        ("[plugins]\nalow = []\n", "unknown key(s) alow"),
        ("[plugins\n", "tickserve.toml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "tickserve.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plugin_policy(read_config(path), None, None)


def test_serve_applies_the_config(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "tickserve.toml"
    path.write_text('[plugins]\ndeny = ["xgboost"]\n')
    out = subprocess.run(
        [sys.executable, "-m", "tickserve.cli", "plugins", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "disabled" in next(ln for ln in out.splitlines() if ln.startswith("xgboost"))
    assert "loaded" in next(ln for ln in out.splitlines() if ln.startswith("lightgbm"))
