#!/usr/bin/env bash
# The deployment on one machine, end to end: a local Prefect server, the `vgnn` process work
# pool, the deployments of deploy/prefect.yaml, one worker, and one run of the weekly rebuild on
# the demo source, watched until it ends. tests/flows/test_deploy.py runs exactly this script.
#
#   deploy/run_local.sh OUT [PORT] [--param KEY=JSON ...]
#
# OUT: the database root (absolute, or relative to the current directory); PORT: the server's
# port on 127.0.0.1 (default 4200). Further arguments go to `prefect deployment run`. Run from
# the repository root with the package installed (`pip install -e .`). The server and the worker
# are stopped when the run ends; the exit status is the run's (0 when it completed).
set -euo pipefail

OUT=$(realpath -m "${1:?usage: deploy/run_local.sh OUT [PORT] [--param KEY=JSON ...]}")
shift
PORT=4200
if [[ $# -gt 0 && $1 != --* ]]; then
    PORT=$1
    shift
fi
WATCH_TIMEOUT=${VGNN_WATCH_TIMEOUT:-3600}

export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false

set -m  # background jobs in their own process groups, with Ctrl-C (SIGINT) not ignored
pids=()
stop() {
    # the worker first, then the server: Ctrl-C to each process group, SIGKILL after 60 s
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -INT -- "-${pids[i]}" 2>/dev/null || continue
        for _ in $(seq 60); do
            kill -0 "${pids[i]}" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop EXIT
trap 'exit 143' TERM INT  # stop them also when this script is stopped

prefect server start --host 127.0.0.1 --port "$PORT" &
pids+=($!)
prefect server status --wait --timeout 300

prefect work-pool create vgnn --type process --overwrite
prefect deploy --all --prefect-file deploy/prefect.yaml
prefect worker start --pool vgnn &
pids+=($!)

prefect deployment run 'vgnn-rebuild/weekly-mp-rebuild' --param source=demo --param out="$OUT" "$@" \
    --watch --watch-timeout "$WATCH_TIMEOUT"
