"""Settings from the environment: defaults, validation, one-line errors naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from server.__main__ import main as server_main
from server.settings import ConfigError, Settings


def test_defaults_match_the_protocol() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.poll_hold_seconds == 30
    assert settings.connect_timeout_seconds == 10
    assert settings.response_timeout_seconds == 30
    assert settings.max_upload_bytes == 67108864
    assert settings.max_waiting_per_camera == 10000
    assert settings.max_cameras == 100_000
    assert settings.camera_retention_seconds == 3600
    assert (settings.api_token, settings.camera_secret) == (None, None)
    assert settings.log_level == "INFO"
    assert settings.header_timeout_seconds == 10
    assert settings.keepalive_timeout_seconds == 15
    assert settings.workers == 1


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "HOST": "127.0.0.1",
            "PORT": "9000",
            "POLL_HOLD_SECONDS": "2.5",
            "CONNECT_TIMEOUT_SECONDS": "1",
            "RESPONSE_TIMEOUT_SECONDS": "4",
            "MAX_UPLOAD_BYTES": "1000",
            "MAX_WAITING_PER_CAMERA": "3",
            "MAX_CAMERAS": "20000",
            "CAMERA_RETENTION_SECONDS": "600",
            "API_TOKEN": "tok",
            "CAMERA_SECRET": "sec",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "json",
            "HEADER_TIMEOUT_SECONDS": "2.5",
            "KEEPALIVE_TIMEOUT_SECONDS": "4",
            "SHUTDOWN_TIMEOUT_SECONDS": "0.5",
            "REDIS_URL": "redis://redis.internal:6380/2",
            "REDIS_PREFIX": "relay-eu",
            "NODE_NAME": "api-1",
            "NODE_TIMEOUT_SECONDS": "2.5",
            "WORKERS": "4",
        }
    )
    assert settings == Settings(
        host="127.0.0.1",
        port=9000,
        poll_hold_seconds=2.5,
        connect_timeout_seconds=1,
        response_timeout_seconds=4,
        max_upload_bytes=1000,
        max_waiting_per_camera=3,
        max_cameras=20000,
        camera_retention_seconds=600,
        api_token="tok",
        camera_secret="sec",
        log_level="DEBUG",
        log_format="json",
        header_timeout_seconds=2.5,
        keepalive_timeout_seconds=4,
        shutdown_timeout_seconds=0.5,
        redis_url="redis://redis.internal:6380/2",
        redis_prefix="relay-eu",
        node_name="api-1",
        node_timeout_seconds=2.5,
        workers=4,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"POLL_HOLD_SECONDS": "abc"}, "POLL_HOLD_SECONDS"),
        ({"POLL_HOLD_SECONDS": "-1"}, "POLL_HOLD_SECONDS"),
        ({"POLL_HOLD_SECONDS": "60"}, "POLL_HOLD_SECONDS"),
        ({"POLL_HOLD_SECONDS": "20", "POLL_TIMEOUT_SECONDS": "15"}, "POLL_HOLD_SECONDS"),
        ({"CONNECT_TIMEOUT_SECONDS": "0"}, "CONNECT_TIMEOUT_SECONDS"),
        ({"RESPONSE_TIMEOUT_SECONDS": "inf"}, "RESPONSE_TIMEOUT_SECONDS"),
        ({"MAX_UPLOAD_BYTES": "1.5"}, "MAX_UPLOAD_BYTES"),
        ({"MAX_WAITING_PER_CAMERA": "-3"}, "MAX_WAITING_PER_CAMERA"),
        ({"MAX_CAMERAS": "0"}, "MAX_CAMERAS"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"WORKERS": "two"}, "WORKERS"),
        ({"MAX_CAMERAS": "1e5"}, "MAX_CAMERAS"),
        ({"CAMERA_RETENTION_SECONDS": "-1"}, "CAMERA_RETENTION_SECONDS"),
        ({"CAMERA_RETENTION_SECONDS": "nan"}, "CAMERA_RETENTION_SECONDS"),
        # shorter than a camera that never answered is kept (POLL_HOLD + CONNECT = 40 s)
        ({"CAMERA_RETENTION_SECONDS": "39"}, "CAMERA_RETENTION_SECONDS"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"HEADER_TIMEOUT_SECONDS": "0"}, "HEADER_TIMEOUT_SECONDS"),
        ({"HEADER_TIMEOUT_SECONDS": "soon"}, "HEADER_TIMEOUT_SECONDS"),
        ({"KEEPALIVE_TIMEOUT_SECONDS": "-1"}, "KEEPALIVE_TIMEOUT_SECONDS"),
        ({"KEEPALIVE_TIMEOUT_SECONDS": "nan"}, "KEEPALIVE_TIMEOUT_SECONDS"),
        ({"SHUTDOWN_TIMEOUT_SECONDS": "0"}, "SHUTDOWN_TIMEOUT_SECONDS"),
        ({"SHUTDOWN_TIMEOUT_SECONDS": "later"}, "SHUTDOWN_TIMEOUT_SECONDS"),
        # a longer header deadline could never apply: the keep-alive timer cuts first
        ({"HEADER_TIMEOUT_SECONDS": "16"}, "HEADER_TIMEOUT_SECONDS"),
        (
            {"HEADER_TIMEOUT_SECONDS": "120", "KEEPALIVE_TIMEOUT_SECONDS": "60"},
            "HEADER_TIMEOUT_SECONDS",
        ),
        ({"MAX_RESULT_BYTES_IN_FLIGHT": "lots"}, "MAX_RESULT_BYTES_IN_FLIGHT"),
        ({"MAX_RESULT_BYTES_IN_FLIGHT": "0"}, "MAX_RESULT_BYTES_IN_FLIGHT"),
        (
            {"MAX_RESULT_BYTES_IN_FLIGHT": "999", "MAX_UPLOAD_BYTES": "1000"},
            "MAX_RESULT_BYTES_IN_FLIGHT",
        ),
        ({"BODY_TIMEOUT_SECONDS": "0"}, "BODY_TIMEOUT_SECONDS"),
        ({"BODY_TIMEOUT_SECONDS": "nan"}, "BODY_TIMEOUT_SECONDS"),
        ({"WRITE_TIMEOUT_SECONDS": "-1"}, "WRITE_TIMEOUT_SECONDS"),
        ({"WRITE_TIMEOUT_SECONDS": "soon"}, "WRITE_TIMEOUT_SECONDS"),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://redis:port"}, "REDIS_URL"),
        ({"REDIS_URL": "unix://"}, "REDIS_URL"),
        # options in its query that redis-py refuses only when it connects
        ({"REDIS_URL": "redis://redis:6379/0?socket_timeout=abc"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://redis:6379/0?max_connections=x"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://redis:6379/3", "REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),  # a cluster of nodes needs its address
        ({"WORKERS": "99999999999999999999", "REDIS_URL": "redis://redis"}, "WORKERS"),
        ({"WORKERS": "1025", "REDIS_URL": "redis://redis"}, "WORKERS"),
        ({"PORT": "9" * 5_000}, "PORT"),  # past int()'s own limit of 4,300 digits
        ({"REDIS_PREFIX": "a b"}, "REDIS_PREFIX"),
        ({"NODE_NAME": "api/1"}, "NODE_NAME"),
        ({"NODE_TIMEOUT_SECONDS": "0"}, "NODE_TIMEOUT_SECONDS"),
        ({"NODE_TIMEOUT_SECONDS": "nan"}, "NODE_TIMEOUT_SECONDS"),
        ({"MIN_TRANSFER_BYTES_PER_SECOND": "0"}, "MIN_TRANSFER_BYTES_PER_SECOND"),
        ({"MIN_TRANSFER_BYTES_PER_SECOND": "-65536"}, "MIN_TRANSFER_BYTES_PER_SECOND"),
        ({"MIN_TRANSFER_BYTES_PER_SECOND": "64k"}, "MIN_TRANSFER_BYTES_PER_SECOND"),
        ({"MIN_TRANSFER_BYTES_PER_SECOND": "1.5"}, "MIN_TRANSFER_BYTES_PER_SECOND"),
        # what float() and int() take but the contract's number grammar does not
        ({"POLL_HOLD_SECONDS": "1_0"}, "POLL_HOLD_SECONDS"),
        ({"POLL_HOLD_SECONDS": "\u0663"}, "POLL_HOLD_SECONDS"),
        ({"PORT": "8_080"}, "PORT"),
        ({"MAX_CAMERAS": "\uff11\uff10"}, "MAX_CAMERAS"),
        ({"CONNECT_TIMEOUT_SECONDS": "0x10"}, "CONNECT_TIMEOUT_SECONDS"),
        # the number grammar takes 1e999; float() makes it infinite: never a timeout
        ({"RESPONSE_TIMEOUT_SECONDS": "1e999"}, "RESPONSE_TIMEOUT_SECONDS"),
        ({"CONNECT_TIMEOUT_SECONDS": "1e999"}, "CONNECT_TIMEOUT_SECONDS"),
        ({"WRITE_TIMEOUT_SECONDS": "1e999"}, "WRITE_TIMEOUT_SECONDS"),
        ({"BODY_TIMEOUT_SECONDS": "1e999"}, "BODY_TIMEOUT_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    message = str(error.value)
    assert message.startswith(variable)
    assert "\n" not in message


def test_the_header_deadline_may_equal_the_keepalive_timeout() -> None:
    settings = Settings.from_env(
        {"HEADER_TIMEOUT_SECONDS": "120", "KEEPALIVE_TIMEOUT_SECONDS": "120"}
    )
    assert (settings.header_timeout_seconds, settings.keepalive_timeout_seconds) == (120, 120)


def test_secrets_stay_out_of_the_repr() -> None:
    settings = Settings.from_env({"API_TOKEN": "hunter2-token", "CAMERA_SECRET": "s3cr3t-value"})
    shown = repr(settings)
    assert "hunter2-token" not in shown
    assert "s3cr3t-value" not in shown
    assert "port=8080" in shown


def test_cluster_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.redis_prefix == "camrelay"
    assert settings.node_timeout_seconds == 5
    # host name, pid and a random suffix: two nodes of one host never share a name
    assert settings.node_name.split("-")[-2] == str(os.getpid())
    assert settings.node_name != Settings.from_env({}).node_name


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2-pass@redis:6379/0",
        "rediss://camrelay:hunter2-pass@redis.example:6380/1",
        "redis://redis:6379/0?password=hunter2-pass",
    ],
)
def test_the_redis_password_stays_out_of_the_repr_and_errors(url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.redis_url == url
    assert "hunter2-pass" not in repr(settings)
    assert "hunter2-pass" not in str(settings.redis_url_redacted)
    assert "***" in repr(settings)
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": url.replace("redis", "http", 1)})
    assert "hunter2-pass" not in str(error.value)
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": url + ("&" if "?" in url else "?") + "socket_timeout=x"})
    assert "hunter2-pass" not in str(error.value)
    assert "socket_timeout" in str(error.value)


def test_workers_past_the_most_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    assert server_main(["--workers", "99999999999999999999"]) == 2
    assert capsys.readouterr().err == (
        "camrelay: configuration error: --workers must be at most 1024, got 99999999999999999999\n"
    )


def test_redis_url_schemes() -> None:
    for url in ("redis://localhost", "rediss://redis:6380/0", "unix:///run/redis.sock"):
        assert Settings.from_env({"REDIS_URL": url}).redis_url == url


@pytest.mark.process
def test_bad_value_stops_start_up_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server"],
        env={"PORT": "eighty", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "camrelay: configuration error: PORT must be a whole number, got 'eighty'"
    ]


@pytest.mark.process
def test_an_address_in_use_stops_start_up_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "server"],
            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"camrelay: cannot listen on 127.0.0.1:{port} (HOST, PORT): ")
    assert "Traceback" not in result.stderr


def test_the_registry_settings_reach_the_relay() -> None:
    settings = Settings.from_env(
        {"MAX_CAMERAS": "7", "CAMERA_RETENTION_SECONDS": "120", "POLL_HOLD_SECONDS": "20"}
    )
    config = settings.relay_config
    assert (config.max_cameras, config.session_retention_seconds) == (7, 120)
    assert config.refusal_delay_seconds == 1.0
    # a camera that never answered a command: kept for the hold plus the connect timeout
    assert config.unanswered_retention_seconds == 30


def test_transfer_rate_is_read_and_bounds_a_transfer() -> None:
    default = Settings.from_env({})
    assert default.min_transfer_bytes_per_second == 65536
    # a 64 MiB answer: its piece deadline (WRITE_TIMEOUT_SECONDS) plus 1024 s
    assert default.transfer_seconds(30, 64 * 1024 * 1024) == 1054
    settings = Settings.from_env({"MIN_TRANSFER_BYTES_PER_SECOND": "1000"})
    assert settings.min_transfer_bytes_per_second == 1000
    assert settings.transfer_seconds(0.5, 2500) == 3


def test_result_limits_are_read_and_default_to_eight_uploads() -> None:
    assert Settings.from_env({}).result_budget_bytes == 8 * 67108864
    assert Settings.from_env({"MAX_UPLOAD_BYTES": "1000"}).result_budget_bytes == 8000
    settings = Settings.from_env(
        {
            "MAX_UPLOAD_BYTES": "1000",
            "MAX_RESULT_BYTES_IN_FLIGHT": "1000",
            "BODY_TIMEOUT_SECONDS": "2.5",
            "WRITE_TIMEOUT_SECONDS": "7",
        }
    )
    assert settings.result_budget_bytes == 1000
    assert (settings.body_timeout_seconds, settings.write_timeout_seconds) == (2.5, 7)
    assert settings.relay_config.max_result_bytes_in_flight == 1000
