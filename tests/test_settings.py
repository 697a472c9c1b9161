"""settings.py: every environment value is checked where it is read, and a value a setting
does not accept is a SettingsError naming the variable and what it accepts (the CLI prints
it as one line and exits 78: tests/test_cli.py)."""

import re

import pytest

from sanction_service.settings import Settings, SettingsError


def test_settings_refuse_each_bad_value_naming_the_variable(monkeypatch):
    for variable, value in [
        ("SANCTION_MAP_SIZE", "1k"),
        ("SANCTION_GRPC_THREADS", "0"),
        ("SANCTION_COUNTER_FLUSH_SECONDS", "0"),
        ("SANCTION_WRITER_WAIT_SECONDS", "nan"),
        ("SANCTION_PREFILTER", "of"),
        ("SANCTION_FAST_BATCHES", "yes please"),
        ("SANCTION_PREFILTER_MIN_CAPACITY", "1e6"),
    ]:
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError, match=re.escape(variable)):
            Settings()
        monkeypatch.delenv(variable)
    monkeypatch.setenv("SANCTION_LOG_LEVEL", "debug")
    monkeypatch.setenv("SANCTION_PREFILTER", "OFF")
    monkeypatch.setenv("SANCTION_PIN_CPUS", "on")
    settings = Settings()
    assert (settings.log_level, settings.prefilter_enabled, settings.pin_cpus) == ("DEBUG", False, True)


def test_empty_values_mean_the_default(monkeypatch):
    monkeypatch.setenv("SANCTION_METRICS_PORT", "")
    monkeypatch.setenv("SANCTION_LOG_LEVEL", "")
    assert (Settings().metrics_port, Settings().log_level) == (9464, "INFO")


@pytest.mark.parametrize(
    "variable, value, accepted",
    [
        ("SANCTION_METRICS_PORT", "abc", "a whole number from 0 to 65535"),
        ("SANCTION_METRICS_PORT", "65536", "a whole number from 0 to 65535"),
        ("SANCTION_WORKERS", "0", "a whole number at least 1"),
        ("SANCTION_PREFILTER_ERROR_RATE", "0", "a number greater than 0 and less than 1"),
        ("SANCTION_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SANCTION_PIN_CPUS", "2", "on or off"),
    ],
)
def test_the_message_is_one_line_naming_variable_value_and_what_is_accepted(monkeypatch, variable, value, accepted):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{variable}={value!r} is not accepted: {accepted}")
