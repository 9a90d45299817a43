"""Configuration: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_appliance import config
from pi_appliance.daemon import load_settings, parse_args
from pi_appliance.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[mpd]\nprot = 1\n", "mpd.prot", "unknown key"),
        ("[mpd]\nport = 'x'\n", "mpd.port", "integer"),
        ("[mpd]\nport = 70000\n", "mpd.port", "0..65535"),
        ("[output]\nkind = 'laser'\n", "output.kind", "auto, pigpio"),
        ("[discovery]\nenabled = 1\n", "discovery.enabled", "true or false"),
        ("[mpd]\nbind = '0.0.0.0'\n", "mpd.bind", "list"),
        ("[mpd]\nbind = ['a', 3]\n", "mpd.bind[1]", "string"),
        ("log_level = 'loud'\n", "log_level", "debug, info"),
        ("mpd = 3\n", "mpd", "table"),
        ("surprise = true\n", "surprise", "unknown key"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert exc.value.path == str(p)
    assert exc.value.key == key
    assert fragment in exc.value.message
    assert str(p) in str(exc.value) and key in str(exc.value)


def test_syntax_error_names_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[mpd\n")
    with pytest.raises(ConfigError, match="TOML syntax") as exc:
        config.load(p)
    assert exc.value.path == str(p)


def test_missing_named_file_is_an_error_missing_default_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "nope.toml", required=True)
    assert config.load(tmp_path / "nope.toml") == config.Settings()


def test_values_and_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "state_dir = '/tmp/x'\n[mpd]\nport = 6601\nbind = ['0.0.0.0']\n[output]\nkind = 'sim'\n")
    s = config.load(p)
    assert (s.state_dir, s.mpd.port, s.mpd.bind, s.output.kind) == ("/tmp/x", 6601, ["0.0.0.0"], "sim")
    assert s.source == str(p)
    args = parse_args(["--config", str(p), "--port", "7000", "--output", "gpiozero", "--no-mdns"])
    s2 = load_settings(args)
    assert (s2.mpd.port, s2.output.kind, s2.discovery.enabled) == (7000, "gpiozero", False)
    assert s2.mpd.bind == ["0.0.0.0"]


def test_daemon_reports_config_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pi_appliance.daemon import main

    p = write(tmp_path, "[mpd]\nport = -1\n")
    assert main(["--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: mpd.port:" in err
