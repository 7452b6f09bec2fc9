#!/usr/bin/env bash
# GPU build check (issue #20 item 5): see benchmarks/gpu_check.py.
#
# Two steps:
#   bash benchmarks/gpu_check.sh prepare   # HERE (with internet): wheels + the Togo archive
#                                          # into cache/gpu_check/ (git-ignored, ~16 MiB)
#   bash benchmarks/gpu_check.sh [N] [ARGS] # ON THE GPU MACHINE (no internet), N structures
#                                          # (default 2000); device tool: carry ["cache/gpu_check"];
#                                          # ARGS go to gpu_check.py, e.g. --processes 4,8 (the
#                                          # build split over 4, then 8 processes sharing the GPU),
#                                          # --network-sweep 1000 (the network stage alone at three
#                                          # batch sizes), --profile 300 (the network stage under
#                                          # torch.profiler), --flow cuda (vgnn build --cluster cuda:
#                                          # Prefect + Dask, wheels in cache/gpu_check/flow_whl),
#                                          # --processes 0 (no in-process build)
#
# The device machine's python3 already has torch with CUDA (2.11+cu130), e3nn, numpy, scipy,
# pyarrow, tqdm, pyyaml; torch CUDA wheels are ~1 GB and could not travel (64 MiB limit). It
# lacks pymatgen, spglib, moyopy, seekpath, phonopy (+ phonors), ase, monty, ruamel.yaml, orjson and
# palettable (what a build imports, listed by gpu_check.py in "imported_distributions"): they travel as
# cp312 manylinux wheels and are installed into /tmp/site. The whole check is bounded by
# GPU_CHECK_TIMEOUT seconds (default 470, so it returns inside an 8-minute call); the JSON goes
# to $OUT (the device tool's output folder) and benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=cache/gpu_check

if [[ "${1:-}" == "prepare" ]]; then
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p "$CACHE/whl"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CACHE/whl" \
        monty==2026.10.21 orjson==3.13.0 pymatgen==2026.10.24 pymatgen-core==2026.10.16 \
        ruamel.yaml==0.19.1 seekpath==2.2.2 spglib==2.8.0 moyopy==0.21.0 phonopy==4.10.0 phonors==0.8.0 ase==3.29.0 \
        palettable==3.3.3
    # --flow (vgnn build --cluster cuda): Prefect, Dask and their requirements as this venv resolved
    # them, less what the device image has and what a build never imports; Prefect's web UI
    # (4.7 MiB, never served by the build's ephemeral server) is dropped from its wheel, to fit
    rm -rf "$CACHE/flow_whl"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
        -d "$CACHE/flow_whl" $("$PY" benchmarks/gpu_check.py --flow-requirements)
    "$PY" - "$CACHE"/flow_whl/prefect-*.whl <<'STRIP'
import sys, zipfile
path = sys.argv[1]
ui = ("prefect/server/ui/", "prefect/server/ui-v2/")
with zipfile.ZipFile(path) as src:
    items = [(i, src.read(i)) for i in src.infolist() if not i.filename.startswith(ui)]
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
    for info, data in items:
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"".join(l for l in data.splitlines(keepends=True) if not l.startswith(tuple(u.encode() for u in ui)))
        dst.writestr(info, data)
STRIP
    cp "${VGNN_DATA_DIR:-../shared/data}/togo_phonondb/unitcells_conf_born.tar.xz" "$CACHE/"
    du -sh "$CACHE"
    exit 0
fi

N=${1:-2000}
PY=${PYTHON:-python3}
if ! "$PY" -c "import pymatgen.core, spglib, moyopy, seekpath, phonopy" 2>/dev/null; then
    [[ -d "$CACHE/whl" ]] || { echo "no $CACHE/whl: run 'bash benchmarks/gpu_check.sh prepare' first and carry $CACHE" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CACHE"/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# the build's ephemeral Prefect server: no UI (not carried), no telemetry (no network there)
export PREFECT_UI_ENABLED=false PREFECT_SERVER_ANALYTICS_ENABLED=false
if [[ " $* " == *" --flow "* || " $* " == *" --flow="* ]]; then
    if ! "$PY" -c "import prefect, prefect_dask, distributed" 2>/dev/null; then
        [[ -d "$CACHE/flow_whl" ]] || { echo "no $CACHE/flow_whl: run 'bash benchmarks/gpu_check.sh prepare' first" >&2; exit 2; }
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_flow \
            "$CACHE"/flow_whl/*.whl
        export PYTHONPATH=/tmp/site_flow${PYTHONPATH:+:$PYTHONPATH}
    fi
    # seconds, not the device minutes a failed flow costs: imports, versions, Prefect's server app
    PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PY" benchmarks/gpu_check.py --flow-preflight || exit 2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ARCHIVE=$CACHE/unitcells_conf_born.tar.xz
[[ -f "$ARCHIVE" ]] || ARCHIVE=${VGNN_DATA_DIR:-../shared/data}/togo_phonondb/unitcells_conf_born.tar.xz
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" benchmarks/gpu_check.py --n "$N" --device "${DEVICE:-cuda}" \
    --archive "$ARCHIVE" --out "${OUT:-benchmarks/results}" "${@:2}"
