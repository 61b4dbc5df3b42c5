"""Deploying and knowing what runs: .env.example, compose's env_file, the Kubernetes and
systemd examples, the LICENSE, --version, --help, ``./run.sh help``, the start-up line and
run.sh dev's Ctrl-C wrapper."""

from __future__ import annotations

import ast
import asyncio
import configparser
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from camera.settings import CameraSettings
from common.version import setup_cfg_version, version
from server.__main__ import startup_summary
from server.serve.runner import DRAIN_TIMEOUT_SECONDS
from server.serve.supervisor import STOP_GRACE_SECONDS
from server.settings import ENVIRONMENT, Settings
from tests.processes import child_env, server_process

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "camrelay.service"
RUN_SH = ROOT / "run.sh"
#: The Kubernetes version the manifests are validated against (schemas shipped offline).
KUBERNETES_VERSION = "1.30.0"
CAMRELAY_SERVICES = ("api", "camera", "cluster-api", "cluster-cameras")
SHUTDOWN_SECONDS = Settings().shutdown_timeout_seconds
TIMEOUT = 60


# -- which variables the settings read (from the source, and cross-checked at run time) ------


def _from_env(path: Path, class_name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "from_env":
                    return item
    raise AssertionError(f"no {class_name}.from_env in {path}")


def _names_passed(function: ast.FunctionDef) -> set[str]:
    """Upper-case string literals passed to calls in ``function``: the variables it reads
    (``reader.number("PORT", ...)``, ``environ.get("CAMERA_ID", ...)``, ...)."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            strings = [
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
            # the first string argument is the name; a later one is a default ("INFO")
            if strings and re.fullmatch(r"[A-Z][A-Z0-9_]+", strings[0]):
                names.add(strings[0])
    return names


def server_variables() -> set[str]:
    return _names_passed(_from_env(ROOT / "server" / "settings.py", "Settings"))


def camera_variables() -> set[str]:
    return _names_passed(_from_env(ROOT / "camera" / "settings.py", "CameraSettings"))


class _Recording(dict[str, str]):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def test_the_source_scan_finds_what_from_env_reads() -> None:
    server = _Recording({})
    Settings.from_env(server)
    camera = _Recording({"API_BASE_URL": "http://api:8080"})
    CameraSettings.from_env(camera)
    assert server_variables() == server.read
    assert camera_variables() == camera.read
    assert len(server.read) >= 25


def test_help_table_lists_exactly_the_server_variables() -> None:
    names = [var.name for var in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert set(names) == server_variables()
    for var in ENVIRONMENT:
        assert var.default, var.name
        assert var.description, var.name


# -- .env.example and compose ------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    previous = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            assert name not in values, f".env.example names {name} twice"
            assert previous.startswith("# "), f".env.example: {name} has no comment above it"
            values[name] = value
        previous = line
    return values


def test_env_example_names_every_setting_with_a_valid_default() -> None:
    values = env_example()
    missing = (server_variables() | camera_variables()) - set(values)
    assert not missing, f".env.example lacks {sorted(missing)}"
    # Used as it is, it is a valid configuration for both, and the defaults' one.
    assert Settings.from_env(values).port == 8080
    defaults, configured = Settings.from_env({}), Settings.from_env(values)
    for name in ("poll_hold_seconds", "max_upload_bytes", "result_budget_bytes", "workers"):
        assert getattr(configured, name) == getattr(defaults, name), name
    assert CameraSettings.from_env(values).camera_id == "default"


def compose_variants() -> Iterator[tuple[str, dict[str, Any]]]:
    base = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    yield "default", base
    dev = yaml.safe_load(COMPOSE_DEV.read_text(encoding="utf-8"))
    for name, override in dev["services"].items():  # env_file is not overridden there
        assert "env_file" not in override, name
    yield "dev", base


@pytest.mark.parametrize(("variant", "compose"), list(compose_variants()))
def test_compose_services_read_the_optional_env_file(variant: str, compose: dict[str, Any]) -> None:
    for name in CAMRELAY_SERVICES:
        assert compose["services"][name]["env_file"] == [{"path": ".env", "required": False}]
    # Inside the container the api listens where the published port and the check expect.
    for name in ("api", "cluster-api"):
        environment = compose["services"][name]["environment"]
        assert (environment["HOST"], str(environment["PORT"])) == ("0.0.0.0", "8080")


def test_dev_override_mounts_common_but_not_tools() -> None:
    dev = yaml.safe_load(COMPOSE_DEV.read_text(encoding="utf-8"))
    for name in ("api", "camera"):
        mounts = [volume.split(":")[:2] for volume in dev["services"][name]["volumes"]]
        assert ["./common", "/app/common"] in mounts, name
        assert all(source != "./tools" for source, _ in mounts), name


def test_the_server_imports_nothing_from_tools() -> None:
    for path in [*(ROOT / "server").rglob("*.py"), *(ROOT / "common").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] != "tools", path
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] != "tools" for alias in node.names), path


# -- Kubernetes --------------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                found.append((f"{path.name}/{document['kind']}", document))
    return found


def manifest(kind: str, name: str) -> dict[str, Any]:
    for _, document in manifests():
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise AssertionError(f"no {kind} {name} under {KUBERNETES}")


def test_the_expected_manifests_are_there() -> None:
    kinds = {label.split("/")[1] for label, _ in manifests()}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "ConfigMap",
        "Secret",
    } <= kinds


@pytest.mark.parametrize(("label", "document"), manifests(), ids=[m[0] for m in manifests()])
def test_manifest_is_valid_kubernetes(label: str, document: dict[str, Any]) -> None:
    # strict: an unknown field (a typo) fails too; the schemas ship with the package.
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_bad_manifest() -> None:
    deployment = manifest("Deployment", "camrelay")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_deployment_probes_stops_and_is_locked_down() -> None:
    pod = manifest("Deployment", "camrelay")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = float(pre_stop[1])
    # The grace covers the pause, the drain and the server's shutdown, with a margin.
    needed = pause + DRAIN_TIMEOUT_SECONDS + SHUTDOWN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed + 2
    assert pod["terminationGracePeriodSeconds"] <= needed + 15
    text = (KUBERNETES / "deployment.yaml").read_text(encoding="utf-8")
    assert f"= {pod['terminationGracePeriodSeconds']}" in text, "the arithmetic is shown"
    resources = container["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {item["name"]: item for item in container["env"]}
    assert env["WORKERS"]["value"] == "1"
    assert "ulimit" in text.lower() or "open files" in text.lower()
    # Every setting the ConfigMap sets is one the server reads.
    data = manifest("ConfigMap", "camrelay")["data"]
    assert set(data) <= server_variables()
    assert set(manifest("Secret", "camrelay")["stringData"]) == {"API_TOKEN", "CAMERA_SECRET"}


def test_redis_example_has_no_persistence_and_never_evicts() -> None:
    redis = manifest("StatefulSet", "camrelay-redis")
    assert redis["spec"]["replicas"] == 1
    assert "volumeClaimTemplates" not in redis["spec"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert options["--maxmemory-policy"] == "noeviction"
    assert (options["--save"], options["--appendonly"]) == ("", "no")
    assert "managed" in (KUBERNETES / "redis.yaml").read_text(encoding="utf-8")
    assert manifest("ConfigMap", "camrelay")["data"]["REDIS_URL"].startswith(
        "redis://camrelay-redis:6379"
    )


# -- systemd -----------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD_UNIT, encoding="utf-8")
    return parser


def test_systemd_unit_structure() -> None:
    parsed = unit()
    assert set(parsed.sections()) == {"Unit", "Service", "Install"}
    service = parsed["Service"]
    assert service["ExecStart"].endswith("-m server")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] not in ("root", "0")
    assert service["EnvironmentFile"].lstrip("-").startswith("/")
    assert int(service["LimitNOFILE"]) >= 65536
    stop = re.fullmatch(r"(\d+)s?", service["TimeoutStopSec"])
    assert stop, service["TimeoutStopSec"]
    # With WORKERS > 1 the supervisor waits the shutdown time plus its grace.
    assert int(stop[1]) >= SHUTDOWN_SECONDS + STOP_GRACE_SECONDS + 2
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert service[hardening] in ("yes", "strict", "true"), hardening
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here: the structural test above still ran")
    # verify checks that ExecStart's binary exists: point it at this interpreter.
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "camrelay.service"
    copy.write_text(text.replace("/opt/camrelay/.venv/bin/python", sys.executable))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert (result.returncode, problems) == (0, [])


def test_license_is_mit_as_setup_cfg_declares() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 camrelay contributors" in text
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    assert config["metadata"]["license"] == "MIT"


# -- knowing what runs -------------------------------------------------------------------------


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        cwd=ROOT,
        env=child_env(CAMRELAY_NO_VENV="1"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_version_comes_from_the_metadata_or_setup_cfg() -> None:
    assert version() == setup_cfg_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version())
    assert setup_cfg_version(ROOT / "no-such-setup.cfg") == "unknown"


@pytest.mark.parametrize("program", ["server", "camera"])
def test_version_flag(program: str) -> None:
    result = run(sys.executable, "-m", program, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"camrelay {version()}\n", "")


def test_server_help_lists_every_setting_in_plain_text() -> None:
    result = run(sys.executable, "-m", "server", "--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout
    for var in ENVIRONMENT:
        assert re.search(rf"^  {var.name} ", result.stdout, re.M), var.name
    assert "default 8080" in result.stdout


@pytest.mark.parametrize("flag", ["help", "-h", "--help"])
def test_run_sh_help_prints_its_header(flag: str) -> None:
    result = run(str(RUN_SH), flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("camrelay's one entry point. Usage: ./run.sh MODE")
    for mode in ("api", "camera", "demo", "cluster", "test", "lint", "dev", "help"):
        assert re.search(rf"^  {mode} ", result.stdout, re.M), mode
    assert "#" not in result.stdout.splitlines()[0]
    assert "set -euo" not in result.stdout


def test_startup_summary_is_one_short_line() -> None:
    line = startup_summary(Settings())
    assert "\n" not in line
    assert len(line) < 150, line
    assert "0.0.0.0:8080" in line
    assert "single node" in line
    assert "auth off" in line
    assert version() in line
    cluster = Settings(
        redis_url="redis://:pw@redis:6379", api_token="t", camera_secret="s", node_name="n"
    )
    line = startup_summary(cluster, workers=2)
    assert "cluster on redis://:***@redis:6379, 2 workers" in line
    assert "auth on" in line
    assert "pw" not in line
    assert "auth on for users only" in startup_summary(Settings(api_token="t"))


@pytest.mark.process
async def test_startup_logs_the_summary_and_the_settings_only_at_debug() -> None:
    async with server_process(LOG_LEVEL="INFO") as (_, child):
        lines = child.stderr_lines()  # healthy: the start-up lines are written
    assert any("starting with camrelay" in line for line in lines), lines
    assert not any("Settings(" in line for line in lines), lines
    async with server_process(LOG_LEVEL="DEBUG") as (_, child):
        lines = child.stderr_lines()
    assert any("settings: Settings(" in line for line in lines), lines


# -- run.sh dev's Ctrl-C wrapper ---------------------------------------------------------------

#: Stands in for adev: counts the SIGINTs it gets and exits 0 after the first.
FAKE_ADEV = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(1))
print(os.getpgrp(), flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.3)
print(len(got), flush=True)
"""


@pytest.mark.process
async def test_dev_wrapper_passes_one_sigint_to_its_own_process_group() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.devserver",
        sys.executable,
        "-c",
        FAKE_ADEV,
        cwd=ROOT,
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    child_group = int(await asyncio.wait_for(process.stdout.readline(), TIMEOUT))
    assert child_group != process.pid  # out of the wrapper's (the terminal's) group
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert out.decode().split() == ["1"], "exactly one SIGINT reached the command"
    assert (process.returncode, err.decode()) == (0, "")
    assert time.monotonic() - started < 5


def test_camera_fleet_logs_each_camera_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    from camera.__main__ import build_fleet
    from camera.client import Camera

    caplog.set_level(logging.INFO, logger="camera")
    settings = CameraSettings("http://127.0.0.1:9")

    async def start_and_stop() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            for camera in [Camera(settings, session=session), *build_fleet(settings, 2, session)]:
                task = asyncio.ensure_future(camera.run())
                await asyncio.sleep(0)
                camera.stop()
                await task

    asyncio.run(start_and_stop())
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["camera default"] * 2, lines
