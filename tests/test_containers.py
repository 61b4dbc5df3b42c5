"""Static checks of the container files (no Docker engine needed).

Real linters first (hadolint on the Dockerfile, the official compose-spec schema on the
compose files, as vendored by check-jsonschema), then the facts the rest of the project
relies on: the image's entry point, user and health check, the services' wiring, and that
every environment variable the compose files pass is one the settings actually read.
"""

from __future__ import annotations

import asyncio
import configparser
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera.settings import CameraSettings
from server.settings import Settings
from tests.test_deploy import env_example
from tools.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
RUN_SH = ROOT / "run.sh"
SETUP_CFG = ROOT / "setup.cfg"

#: Read by run.sh / the interpreter rather than by the settings classes.
LAUNCHER_VARS = frozenset(
    {"MODE", "CAMRELAY_NO_VENV", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
)
#: The role each compose service plays, i.e. whose settings read its environment.
SERVICE_ROLES = {
    "api": "server",
    "camera": "camera",
    "cluster-api": "server",
    "cluster-cameras": "camera",
}
#: Services that run the camrelay image (the others run someone else's image).
CAMRELAY_SERVICES = frozenset(SERVICE_ROLES)
CLUSTER_PROFILE = {"redis", "cluster-api", "cluster-cameras"}
#: run.sh modes that serve HTTP on PORT (the others must not be probed by the health check).
SERVING_MODES = ("api", "dev")
QUIET_MODES = ("camera", "test", "lint", "bench")

SUBPROCESS_TIMEOUT = 60


# -- helpers ---------------------------------------------------------------------------------


def find_tool(name: str) -> str:
    """A console script of the dev extra: next to this interpreter first, then on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is neither next to {sys.executable} nor on PATH: install the dev extra"
        )
    return found


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined the way Docker joins them."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not pending and not stripped):
            continue  # comments (also inside a continuation) and blank lines
        if not pending:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        keyword, _, args = "".join(pending).strip().partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


@cache
def dockerfile() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


def instructions(keyword: str) -> list[Instruction]:
    return [instruction for instruction in dockerfile() if instruction.keyword == keyword]


def last(keyword: str) -> Instruction:
    found = instructions(keyword)
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not exec form (a JSON array): {args!r}")
    assert isinstance(value, list), args
    assert value, args
    assert all(isinstance(item, str) for item in value), args
    return value


def healthcheck_command() -> list[str]:
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", last("HEALTHCHECK").args, re.DOTALL)
    assert match, f"HEALTHCHECK must be `[--options] CMD [...]`: {last('HEALTHCHECK').args!r}"
    return exec_form(match[2])


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), path
    return document


def merge(base: Any, override: Any) -> Any:
    """Enough of compose's merge for these files: mappings merge, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def compose_variants() -> Iterator[tuple[str, dict[str, Any]]]:
    base = load_yaml(COMPOSE)
    yield "default", base
    yield "dev", merge(base, load_yaml(COMPOSE_DEV))


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Compose's `${NAME}` / `${NAME:-default}` / `${NAME-default}` substitution."""
    return _VARIABLE.sub(lambda m: environ.get(m["name"]) or m["default"] or "", value)


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def load_settings(role: str, environ: Mapping[str, str]) -> set[str]:
    """Build the role's settings from ``environ``; returns the variables they read."""
    recording = RecordingEnv(environ)
    if role == "server":
        Settings.from_env(recording)
    else:
        CameraSettings.from_env(recording)
    return recording.read


@cache
def known_variables(role: str) -> frozenset[str]:
    return frozenset(load_settings(role, {"API_BASE_URL": "http://api:8080"}))


def run_sh_arms() -> dict[str, str]:
    """run.sh's `case "$MODE"` arms: mode -> body."""
    text = RUN_SH.read_text(encoding="utf-8")
    return {
        match["mode"]: match["body"]
        for match in re.finditer(
            r"^\s*(?P<mode>[a-z]+)\)\s*$(?P<body>.*?)^\s*;;", text, re.M | re.S
        )
    }


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]


def dockerignored(path: str) -> bool:
    for pattern in dockerignore_patterns():
        if pattern.startswith("!"):
            continue  # no exceptions are used; a real one would need ordered evaluation
        bare = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, bare) for part in parts):
            return True
    return False


# -- real linters ----------------------------------------------------------------------------


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [find_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_compose_files_match_the_compose_spec_schema() -> None:
    # check-jsonschema vendors the official compose-spec schema: no network needed.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
            str(COMPOSE_DEV),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the Dockerfile --------------------------------------------------------------------------


def test_image_is_python_311_slim() -> None:
    assert [instruction.args for instruction in instructions("FROM")] == ["python:3.11-slim"]


def test_entrypoint_is_exec_form_through_run_sh_with_api_as_default() -> None:
    assert exec_form(last("ENTRYPOINT").args) == ["./run.sh"]
    assert exec_form(last("CMD").args) == ["api"]
    workdir = last("WORKDIR").args
    copies = [instruction.args.split() for instruction in instructions("COPY")]
    run_sh = [args for args in copies if "run.sh" in args]
    assert run_sh, "run.sh is not copied into the image"
    # Executable in the image whatever the checkout's file mode (e.g. on Windows).
    assert "--chmod=0755" in run_sh[0] or "--chmod=755" in run_sh[0]
    assert run_sh[0][-1] in ("./", workdir, workdir + "/")


def test_runs_as_a_non_root_user() -> None:
    user = last("USER")
    name = user.args.split(":")[0]
    assert name not in ("root", "0", "")
    assert user.line > max(instruction.line for instruction in instructions("RUN"))
    if name.isdigit():  # a numeric USER must be an account the image creates
        assert any(f"--uid {name}" in instruction.args for instruction in instructions("RUN"))


def test_environment_and_port() -> None:
    env = " ".join(instruction.args for instruction in instructions("ENV"))
    assert "CAMRELAY_NO_VENV=1" in env.split()
    assert "PYTHONUNBUFFERED=1" in env.split()
    assert [instruction.args for instruction in instructions("EXPOSE")] == ["8080"]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """setup.cfg alone feeds the dependency layer, so a code change keeps it cached."""
    keywords = [(instruction.keyword, instruction.args) for instruction in dockerfile()]
    first_code_copy = next(
        index
        for index, (keyword, args) in enumerate(keywords)
        if keyword == "COPY" and ("server" in args.split() or "camera" in args.split())
    )
    deps = next(
        index
        for index, (keyword, args) in enumerate(keywords)
        if keyword == "RUN" and "--requirement" in args
    )
    assert deps < first_code_copy
    assert all(
        args.split()[:-1] == ["setup.cfg"] for keyword, args in keywords[:deps] if keyword == "COPY"
    )
    installs = [args for keyword, args in keywords[first_code_copy:] if keyword == "RUN"]
    assert any("pip install --no-cache-dir" in args for args in installs)


def test_copied_files_exist_and_are_not_dockerignored() -> None:
    for instruction in instructions("COPY"):
        *sources, _destination = [
            arg for arg in instruction.args.split() if not arg.startswith("--")
        ]
        for source in sources:
            assert (ROOT / source).exists(), f"line {instruction.line}: {source} does not exist"
            assert not dockerignored(source), f"line {instruction.line}: {source} is dockerignored"
    for junk in (".venv", ".git", "bench/results", ".env", "server/__pycache__", ".mypy_cache"):
        assert dockerignored(junk), f"{junk} is not in .dockerignore"


def test_extras_build_arg_names_a_setup_cfg_extra_with_adev() -> None:
    assert "INSTALL_EXTRAS" in " ".join(instruction.args for instruction in instructions("ARG"))
    dev = load_yaml(COMPOSE_DEV)["services"]["api"]["build"]["args"]["INSTALL_EXTRAS"]
    config = configparser.ConfigParser(interpolation=None)
    config.read(SETUP_CFG, encoding="utf-8")
    assert "aiohttp-devtools" in config["options.extras_require"][dev]


@pytest.mark.parametrize("extras", ["", "dev"])
def test_dependency_layer_installs_what_setup_cfg_declares(tmp_path: Path, extras: str) -> None:
    """Run the Dockerfile's own requirements one-liner on a copy of setup.cfg."""
    step = next(i.args for i in instructions("RUN") if "--requirement" in i.args)
    match = re.match(r'python -c "(?P<code>[^"]*)"\s*>\s*(?P<target>\S+)', step)
    assert match, step
    assert f"--requirement {match['target']}" in step
    shutil.copy(SETUP_CFG, tmp_path / "setup.cfg")
    result = subprocess.run(
        [sys.executable, "-c", match["code"]],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "INSTALL_EXTRAS": extras},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=True,
    )
    config = configparser.ConfigParser(interpolation=None)
    config.read(SETUP_CFG, encoding="utf-8")
    groups = [config["options"]["install_requires"]]
    if extras:
        groups.append(config["options.extras_require"][extras])
    expected = [line.strip() for group in groups for line in group.splitlines() if line.strip()]
    assert result.stdout.splitlines() == expected


# -- the health check ------------------------------------------------------------------------


def test_healthcheck_is_python_on_healthz() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "exec form with python: a slim image has no curl"
    compile(command[2], "HEALTHCHECK", "exec")
    assert "/healthz" in command[2]


def run_healthcheck(
    tmp_path: Path, *, port: int, mode: str | None, pid1: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run the image's check with a fake PID 1 command line and a clean environment."""
    code = healthcheck_command()[2]
    assert code.count("/proc/1/cmdline") == 1
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(arg.encode() for arg in pid1) + b"\0")
    # A dead proxy: the check must not route 127.0.0.1 through an injected HTTP_PROXY.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "http_proxy": "http://127.0.0.1:9",
    }
    if mode is not None:
        env["MODE"] = mode
    result = subprocess.run(
        [sys.executable, "-c", code.replace("/proc/1/cmdline", str(cmdline))],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    return result


PID1_DOCKER_INIT = ["/sbin/docker-init", "--", "./run.sh"]


@pytest.mark.parametrize(
    ("mode", "pid1"),
    [
        pytest.param("camera", [*PID1_DOCKER_INIT, "camera"], id="compose-camera"),
        pytest.param(None, ["python3", "-m", "camera"], id="docker-run-camera-arg"),
        pytest.param("camera", [*PID1_DOCKER_INIT], id="MODE-only"),
        pytest.param(None, [*PID1_DOCKER_INIT, "test"], id="one-shot-test"),
    ],
)
def test_healthcheck_passes_without_probing_for_modes_that_serve_nothing(
    tmp_path: Path, mode: str | None, pid1: list[str]
) -> None:
    result = run_healthcheck(tmp_path, port=free_port(), mode=mode, pid1=pid1)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("mode", "pid1"),
    [
        pytest.param("api", [*PID1_DOCKER_INIT, "api"], id="compose-api"),
        pytest.param(None, ["python3", "-m", "server"], id="docker-run-default"),
        pytest.param("dev", ["python3", "-m", "aiohttp_devtools", "runserver"], id="dev"),
    ],
)
def test_healthcheck_fails_when_the_server_does_not_answer(
    tmp_path: Path, mode: str | None, pid1: list[str]
) -> None:
    result = run_healthcheck(tmp_path, port=free_port(), mode=mode, pid1=pid1)
    assert result.returncode != 0
    # Refused by the (absent) server itself, not by a proxy or a bug in the one-liner.
    assert result.stderr.rstrip().endswith("Connection refused>"), result.stderr


async def test_healthchecks_pass_against_a_live_server(tmp_path: Path, make_client: Any) -> None:
    client = await make_client()
    port = client.server.port
    image_check = asyncio.to_thread(
        run_healthcheck, tmp_path, port=port, mode=None, pid1=[*PID1_DOCKER_INIT, "api"]
    )
    image_result = await image_check
    assert (image_result.returncode, image_result.stderr) == (0, "")

    test = load_yaml(COMPOSE)["services"]["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert ":8080/healthz" in test[3]
    compose_check = asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", test[3].replace(":8080/", f":{port}/")],
        env={"PATH": os.environ.get("PATH", ""), "http_proxy": "http://127.0.0.1:9"},
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert (await compose_check).returncode == 0


# -- the compose files -----------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "compose"), list(compose_variants()))
def test_services_are_wired_together(variant: str, compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(SERVICE_ROLES) | CLUSTER_PROFILE
    api, camera = services["api"], services["camera"]

    assert "8080:8080" in [str(port) for port in api["ports"]]
    assert environment(camera)["API_BASE_URL"] == "http://api:8080"
    assert camera["depends_on"]["api"]["condition"] == "service_healthy"
    assert api["healthcheck"]["test"][0] == "CMD"
    assert camera["healthcheck"] == {"disable": True}
    for name in CAMRELAY_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["init"] is True
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace, name
        assert int(grace[1]) <= 10, name
        # run.sh lets the argument win over MODE: they must agree.
        assert service["command"][0] == environment(service)["MODE"], name
    assert api["command"] == [environment(api)["MODE"]]
    assert camera["command"] == [environment(camera)["MODE"]]
    # Only the cluster's services are in a profile: `docker compose up` stays one relay.
    for name, service in services.items():
        assert service.get("profiles", []) == (["cluster"] if name in CLUSTER_PROFILE else [])
    expected_api_mode = "dev" if variant == "dev" else "api"
    assert api["command"] == [expected_api_mode]
    assert camera["command"] == ["camera"]


@pytest.mark.parametrize(("variant", "compose"), list(compose_variants()))
def test_every_variable_passed_is_one_the_settings_read(
    variant: str, compose: dict[str, Any]
) -> None:
    for name, service in compose["services"].items():
        if name not in CAMRELAY_SERVICES:
            continue
        role = SERVICE_ROLES[name]
        env = environment(service)
        unknown = set(env) - known_variables(role) - LAUNCHER_VARS
        assert not unknown, f"{variant}/{name} passes variables nobody reads: {sorted(unknown)}"
        for key, value in env.items():
            names = [match["name"] for match in _VARIABLE.finditer(value)]
            # .env's WORKERS is the single api's; the cluster's has its own name
            passed = "CLUSTER_WORKERS" if (name, key) == ("cluster-api", "WORKERS") else key
            assert names in ([], [passed]), f"{name}: {key} should pass through ${{{passed}...}}"
        # With nothing set in the shell, the defaults make a valid configuration.
        defaults = {key: interpolate(value, {}) for key, value in env.items()}
        load_settings(role, defaults)


def test_the_documented_secrets_are_passed_through() -> None:
    services = load_yaml(COMPOSE)["services"]
    api, camera = environment(services["api"]), environment(services["camera"])
    assert api["API_TOKEN"] == "${API_TOKEN:-}"
    assert api["CAMERA_SECRET"] == "${CAMERA_SECRET:-}"
    assert camera["CAMERA_TOKEN"] == "${CAMERA_TOKEN:-}"
    assert camera["CAMERA_ID"] == "${CAMERA_ID:-default}"
    # A value from the shell wins over the default.
    assert interpolate(api["API_TOKEN"], {"API_TOKEN": "s3cret"}) == "s3cret"


def test_dev_override_mounts_the_source_where_the_image_keeps_it() -> None:
    workdir = last("WORKDIR").args.rstrip("/")
    api = load_yaml(COMPOSE_DEV)["services"]["api"]
    mounts = {tuple(volume.split(":")[:2]) for volume in api["volumes"] if isinstance(volume, str)}
    assert ("./server", f"{workdir}/server") in mounts
    assert ("./camera", f"{workdir}/camera") in mounts


def test_cluster_profile_wires_redis_workers_and_a_fleet() -> None:
    services = load_yaml(COMPOSE)["services"]
    redis, api, cameras = services["redis"], services["cluster-api"], services["cluster-cameras"]

    assert re.fullmatch(r"redis:7\.\d+-alpine", redis["image"]), "a pinned Redis >= 6.2"
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {"--save": "", "--appendonly": "no", "--maxmemory-policy": "noeviction"}
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "Redis is for the nodes only"

    api_env = environment(api)
    assert api_env["REDIS_URL"] == "redis://redis:6379"
    # compose reads the project's .env (a copy of .env.example) for ${...} too
    for environ in ({}, env_example()):
        assert Settings.from_env({"WORKERS": interpolate(api_env["WORKERS"], environ)}).workers == 2
    assert api["command"] == ["api"]
    assert api_env["MODE"] == "api"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert api["healthcheck"] == services["api"]["healthcheck"]
    # Every setting the single relay's api passes, the cluster's passes the same way.
    assert {k: v for k, v in api_env.items() if k in environment(services["api"])} == (
        environment(services["api"])
    )
    assert "8081:8080" in [str(port) for port in api["ports"]]

    camera_env = environment(cameras)
    assert camera_env["API_BASE_URL"] == "http://cluster-api:8080"
    assert cameras["command"][:2] == ["camera", "--fleet"]
    assert int(interpolate(cameras["command"][2], {})) == 100
    assert cameras["depends_on"]["cluster-api"]["condition"] == "service_healthy"
    assert cameras["healthcheck"] == {"disable": True}


# -- what run.sh must provide for these files ------------------------------------------------


def test_run_sh_provides_the_modes_the_containers_use() -> None:
    text = RUN_SH.read_text(encoding="utf-8")
    assert "CAMRELAY_NO_VENV" in text
    assert re.search(r"\$\{MODE\b", text), "run.sh does not read MODE"
    arms = run_sh_arms()
    used = {"api", "camera", "dev"} | set(SERVING_MODES) | set(QUIET_MODES)
    missing = used - set(arms)
    assert not missing, f"run.sh lacks modes {sorted(missing)}"
    for mode in ("api", "camera", "dev"):
        # exec: the server/camera must get the container's SIGTERM itself.
        assert re.search(r"^\s*exec\s", arms[mode], re.M), f"run.sh {mode} does not exec"
    assert "runserver" in arms["dev"]
    assert "create_app" in arms["dev"]
