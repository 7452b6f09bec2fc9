#!/usr/bin/env bash
# Make a release from three trained k-MVN members: ensembles, model cards, Born heads, the LO–TO table.
#
#   bash benchmarks/release.sh OUT MEMBER_DIR MEMBER_DIR MEMBER_DIR
#
# MEMBER_DIR: a `vgnn train` output folder (best.pt, log.jsonl, train_config.json), e.g.
# benchmarks/results/training/resume/kmvn_E15. Everything is built under OUT first; the new models are
# installed into vgnn_core/pretrained/checkpoints only when their k-MVN `val` band MAE (mean of
# Petretto and phonondb) beats the shipped model's (FORCE=1 installs anyway). Then the Born heads are
# retrained on the new backbones with the shipped recipe (three seeds at once, averaged) and the
# LO–TO table's summaries and the silicon check are written to benchmarks/results/. About 30 minutes on 2 cores.
# Afterwards: the benchmarks (`bash benchmarks/release.sh --benchmarks OUT`) and
# `python benchmarks/readme_numbers.py --write --epochs "A, B and C"`; the README's history by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
VGNN=${VGNN:-.venv/bin/vgnn}
CK=vgnn_core/pretrained/checkpoints
TR=benchmarks/results/training

if [ "${1:-}" = "--benchmarks" ]; then  # the benchmarks every release reruns (nothing else should run)
  OUT=$2; mkdir -p "$OUT"
  $PY benchmarks/bench_nac.py --limit 60 > "$OUT/bench_nac.log" 2>&1
  $PY benchmarks/bench_vs_mlip.py > "$OUT/bench_vs_mlip.log" 2>&1
  rm -rf demo-db && make demo > "$OUT/demo.log" 2>&1
  $PY benchmarks/bench_queries.py --release demo-db --markdown > "$OUT/queries.md" 2>&1
  $PY benchmarks/plot_results.py > "$OUT/plot.log" 2>&1
  echo "benchmarks done: $OUT"
  exit 0
fi

[ $# -ge 3 ] || { echo "usage: $0 OUT MEMBER_DIR MEMBER_DIR [MEMBER_DIR ...]" >&2; exit 2; }
OUT=$1; shift
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*"; }

log "ensembles of $*"
$VGNN ensemble "$@" --out "$OUT/kmvn_ens"
$VGNN ensemble "$@" --kind mvn --out "$OUT/mvn_ens"
rm -rf "$OUT/ship" && mkdir -p "$OUT/ship"
for kind in kmvn mvn; do
  log "model card: $kind"
  $VGNN ship "$OUT/${kind}_ens" --name $kind --dest "$OUT/ship" > "$OUT/ship_$kind.log" 2>&1
done

$PY - "$OUT/ship/kmvn.card.json" "$CK/kmvn.card.json" "${FORCE:-0}" <<'PY'
import json, sys
new, old, force = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def val(path):
    m = json.load(open(path))["metrics"]
    return m["val"]["bands"]["mae"]["mean"], m["phonondb_val"]["bands"]["mae"]["mean"]
a, b = val(new)
c, d = val(old)
print(f"val k-MVN bands: Petretto {a:.3f} (shipped {c:.3f}), phonondb {b:.3f} (shipped {d:.3f})")
if (a + b) / 2 >= (c + d) / 2 and not force:
    sys.exit("not better on val than the shipped model: not installed (FORCE=1 installs anyway)")
PY

log "installing models, cards, registry entries and member lists"
for kind in kmvn mvn; do
  cp "$OUT/ship/$kind.pt" "$OUT/ship/$kind.md" "$OUT/ship/$kind.card.json" $CK/
  cp "$OUT/${kind}_ens/ensemble.json" $TR/${kind}_pdb_ens.ensemble.json
done
$PY - "$OUT/ship/registry.json" "$CK/registry.json" <<'PY'
import json, sys
src, path = json.load(open(sys.argv[1])), sys.argv[2]
reg = json.load(open(path))
reg.update({kind: src[kind] for kind in ("kmvn", "mvn")})
open(path, "w").write(json.dumps(reg, indent=1, sort_keys=True) + "\n")
PY

# Born heads: the shipped recipe (read from the shipped heads' metrics), seeds 0-2 at once, averaged
RECIPE=$($PY -c "
import json
c = json.load(open('$TR/born_heads.metrics.json'))['averaged'][0]['train_config']
heads = {k: v for k, v in c['heads'].items() if k != 'irreps_in'}  # the backbone's features: set by --backbone
print(c['epochs'], c['lr'], json.dumps(heads))")
read -r EPOCHS LR HEADS <<< "$RECIPE"
log "Born heads: $EPOCHS epochs, lr $LR, heads $HEADS"
pids=()
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 $PY -m vgnn_core.training.born "$OUT/born_s$seed" --backbone "$OUT/kmvn_ens/best.pt" \
      --epochs "$EPOCHS" --lr "$LR" --seed $seed --heads "$HEADS" > "$OUT/born_s$seed.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
$PY -m vgnn_core.training.born "$OUT/born_avg" --backbone "$OUT/kmvn_ens/best.pt" \
    --average "$OUT/born_s0/born_heads.pt" "$OUT/born_s1/born_heads.pt" "$OUT/born_s2/born_heads.pt" > "$OUT/born_avg.log" 2>&1
cp "$OUT/born_avg/born_heads.pt" $CK/born_heads.pt
cp "$OUT/born_avg/metrics.json" $TR/born_heads.metrics.json
$PY - <<'PY'
import hashlib, json
path = "vgnn_core/pretrained/checkpoints/registry.json"
reg = json.load(open(path))
reg["born_heads"]["sha256"] = hashlib.sha256(open("vgnn_core/pretrained/checkpoints/born_heads.pt", "rb").read()).hexdigest()
open(path, "w").write(json.dumps(reg, indent=1, sort_keys=True) + "\n")
PY

log "LO–TO table"
$PY -m vgnn_core.training.nac_eval "$OUT/nac" "$OUT/kmvn_ens/best.pt" > "$OUT/nac.log" 2>&1
$PY - "$OUT/nac/nac_eval.json" <<'PY'
import json, sys
json.dump({"summaries": json.load(open(sys.argv[1]))["summaries"]}, open("benchmarks/results/nac_eval.json", "w"), indent=1)
PY
log "silicon"
$PY benchmarks/silicon_check.py > "$OUT/silicon.log" 2>&1
log "release installed; next: bash benchmarks/release.sh --benchmarks $OUT, then python benchmarks/readme_numbers.py --write --epochs \"A, B and C\""
