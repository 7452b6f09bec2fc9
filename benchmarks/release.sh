#!/usr/bin/env bash
# Make a release from three trained k-MVN members: ensembles, model cards, Born heads, the LO–TO table.
#
#   bash benchmarks/release.sh OUT MEMBER_DIR MEMBER_DIR MEMBER_DIR
#   bash benchmarks/release.sh --benchmarks OUT     # then the benchmarks and val cross-validations every release reruns
#
# Needs the installed venv (`make test` or `make demo` makes it), the training data (`VGNN_DATA_DIR`,
# default ../shared/data, or `vgnn download-data`) and the prepared phonondb targets (`vgnn
# prepare-phonondb`): the model cards are evaluated on every split. MEMBER_DIR: a `vgnn train` output
# folder (best.pt, log.jsonl, train_config.json), e.g. benchmarks/results/training/resume/kmvn_E15.
#
# Everything is built under OUT first: the ensembles and their cards, then - only when the new
# k-MVN's `val` band MAE (mean of Petretto and phonondb) beats the shipped model's (FORCE=1: anyway) -
# Born heads retrained on the new backbones with the shipped heads' recipe (three seeds at once,
# averaged) and the LO–TO evaluation. Only when all of that succeeded is it installed, in one step,
# into vgnn_core/pretrained/checkpoints and benchmarks/results (then the silicon check runs on the
# installed models). About 30 minutes on 2 cores. Afterwards: `--benchmarks OUT`, then
# `python benchmarks/readme_numbers.py --write` (a new results row when the members' epochs changed),
# the prose values it lists as history by hand, and a paragraph in benchmarks/results/training/ROUNDS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-.venv/bin/python}  # both relative to the repository root, where each part runs
VGNN=${VGNN:-.venv/bin/vgnn}
trap 'echo "release.sh failed at line $LINENO (logs in ${OUT:-OUT}/); nothing installed unless the install step finished" >&2; kill $(jobs -p) 2>/dev/null || true' ERR

if [ "${1:-}" = "--benchmarks" ]; then  # the benchmarks every release reruns (nothing else should run)
  [ $# -eq 2 ] || { echo "usage: $0 --benchmarks OUT" >&2; exit 2; }
  OUT=$(realpath -m "$2"); mkdir -p "$OUT"; cd "$ROOT"
  "$PY" benchmarks/bench_nac.py --limit 60 > "$OUT/bench_nac.log" 2>&1
  "$PY" benchmarks/bench_vs_mlip.py > "$OUT/bench_vs_mlip.log" 2>&1
  rm -rf demo-db && make demo > "$OUT/demo.log" 2>&1
  "$PY" benchmarks/bench_queries.py --release demo-db --markdown > "$OUT/queries.md" 2> "$OUT/queries.log"
  "$PY" benchmarks/plot_results.py > "$OUT/plot.log" 2>&1
  # the cross-validations on `val` of the installed k-MVN (the out-of-fold sentences of benchmarks/README.md), both
  # from the same three evaluations
  mkdir -p "$OUT/flag"
  for run in "phonondb path" "phonondb commensurate" "petretto2018 path"; do
    set -- $run
    "$VGNN" evaluate --model kmvn --data "$1" --split val --points "$2" \
      --out "$OUT/flag/val_$1_$2.json" > "$OUT/flag/val_$1_$2.log" 2>&1
  done
  "$PY" benchmarks/uncertainty_cv.py --rows "$OUT"/flag/val_petretto2018_path.json "$OUT"/flag/val_phonondb_path.json \
    > "$OUT/uncertainty_cv.log" 2>&1
  "$PY" benchmarks/uncertainty_latent.py --rows "$OUT"/flag/val_petretto2018_path.json "$OUT"/flag/val_phonondb_path.json \
    > "$OUT/uncertainty_latent.log" 2>&1
  "$PY" benchmarks/instability_cv.py "$OUT"/flag/val_phonondb_path.json "$OUT"/flag/val_phonondb_commensurate.json \
    "$OUT"/flag/val_petretto2018_path.json > "$OUT/instability_cv.log" 2>&1
  echo "benchmarks done: $OUT"
  exit 0
fi

[ $# -ge 3 ] || { echo "usage: $0 OUT MEMBER_DIR MEMBER_DIR [MEMBER_DIR ...]" >&2; exit 2; }
OUT=$(realpath -m "$1"); shift
MEMBERS=()
for m in "$@"; do  # repository-relative where possible: the member lists and cards record these paths
  MEMBERS+=("$(realpath -m --relative-base="$ROOT" "$m")")
done
cd "$ROOT"
CK=vgnn_core/pretrained/checkpoints
TR=benchmarks/results/training
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*"; }

log "ensembles of ${MEMBERS[*]}"
"$VGNN" ensemble "${MEMBERS[@]}" --out "$OUT/kmvn_ens"
"$VGNN" ensemble "${MEMBERS[@]}" --kind mvn --out "$OUT/mvn_ens"
rm -rf "$OUT/ship" && mkdir -p "$OUT/ship"
for kind in kmvn mvn; do
  log "model card: $kind"
  "$VGNN" ship "$OUT/${kind}_ens" --name $kind --dest "$OUT/ship" > "$OUT/ship_$kind.log" 2>&1
done

"$PY" - "$OUT/ship" "$CK" "${FORCE:-0}" <<'PY'
import json, sys
new, old, force = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def val(folder, kind, key):
    m = json.load(open(f"{folder}/{kind}.card.json"))["metrics"]
    return m["val"][key]["mae"]["mean"], m["phonondb_val"][key]["mae"]["mean"]
for kind, key in (("kmvn", "bands"), ("mvn", "gamma")):
    (a, b), (c, d) = val(new, kind, key), val(old, kind, key)
    print(f"val {kind} {key}: Petretto {a:.3f} (shipped {c:.3f}), phonondb {b:.3f} (shipped {d:.3f})")
(a, b), (c, d) = val(new, "kmvn", "bands"), val(old, "kmvn", "bands")
if (a + b) / 2 >= (c + d) / 2 and not force:
    sys.exit("the new k-MVN is not better on val than the shipped one: nothing installed (FORCE=1 goes on anyway)")
PY

# Born heads: the shipped heads' recipe, seeds 0-2 at once, averaged. Options without a command-line
# flag must be the defaults, or this would silently train another recipe.
RECIPE=$("$PY" - "$TR/born_heads.metrics.json" <<'PY'
import dataclasses, json, sys
from vgnn_core.training.born import BornTrainConfig
shipped = json.load(open(sys.argv[1]))["averaged"][0]
config = shipped["train_config"]
defaults = {f.name: f.default for f in dataclasses.fields(BornTrainConfig) if f.default is not dataclasses.MISSING}
passed = {"epochs", "lr", "seed", "heads"}
other = {k: v for k, v in config.items() if k not in passed and defaults.get(k) != v}
if other or shipped.get("data") != ["petretto2018"]:
    sys.exit(f"the shipped Born heads used options this script does not pass: {other}, data {shipped.get('data')}")
heads = {k: v for k, v in config["heads"].items() if k != "irreps_in"}  # the backbone's features: set by --backbone
print(config["epochs"], config["lr"], json.dumps(heads))
PY
)
read -r EPOCHS LR HEADS <<< "$RECIPE"
log "Born heads: $EPOCHS epochs, lr $LR, heads $HEADS"
pids=()
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 "$PY" -m vgnn_core.training.born "$OUT/born_s$seed" --backbone "$OUT/kmvn_ens/best.pt" \
      --epochs "$EPOCHS" --lr "$LR" --seed $seed --heads "$HEADS" > "$OUT/born_s$seed.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"$PY" -m vgnn_core.training.born "$OUT/born_avg" --backbone "$OUT/kmvn_ens/best.pt" \
    --average "$OUT/born_s0/born_heads.pt" "$OUT/born_s1/born_heads.pt" "$OUT/born_s2/born_heads.pt" > "$OUT/born_avg.log" 2>&1

log "LO–TO table"
"$PY" -m vgnn_core.training.nac_eval "$OUT/nac" "$OUT/kmvn_ens/best.pt" --born-heads "$OUT/born_avg/born_heads.pt" \
    > "$OUT/nac.log" 2>&1

log "installing models, cards, registry entries, member lists, Born heads and LO–TO summaries"
"$PY" - "$OUT" "$CK" "$TR" <<'PY'
import hashlib, json, shutil, sys
out, ck, tr = sys.argv[1:]
for kind in ("kmvn", "mvn"):
    for suffix in (".pt", ".md", ".card.json"):
        shutil.copy(f"{out}/ship/{kind}{suffix}", f"{ck}/{kind}{suffix}")
    shutil.copy(f"{out}/{kind}_ens/ensemble.json", f"{tr}/{kind}_pdb_ens.ensemble.json")
shutil.copy(f"{out}/born_avg/born_heads.pt", f"{ck}/born_heads.pt")
shutil.copy(f"{out}/born_avg/metrics.json", f"{tr}/born_heads.metrics.json")
seeds = [json.load(open(f"{out}/born_s{k}/metrics.json")) for k in range(3)]  # each seed alone, for the Born card
json.dump({"seeds": [{"seed": k, "best": m["best"], "test": m["test"]} for k, m in enumerate(seeds)]},
          open(f"{tr}/born_heads.seeds.json", "w"), indent=1)
summaries = json.load(open(f"{out}/nac/nac_eval.json"))["summaries"]
json.dump({"summaries": summaries}, open("benchmarks/results/nac_eval.json", "w"), indent=1)
registry, shipped = json.load(open(f"{ck}/registry.json")), json.load(open(f"{out}/ship/registry.json"))
registry.update({kind: shipped[kind] for kind in ("kmvn", "mvn")})
registry["born_heads"]["sha256"] = hashlib.sha256(open(f"{ck}/born_heads.pt", "rb").read()).hexdigest()
open(f"{ck}/registry.json", "w").write(json.dumps(registry, indent=1, sort_keys=True) + "\n")
PY

log "silicon"
"$PY" benchmarks/silicon_check.py > "$OUT/silicon.log" 2>&1
log "release installed; next: bash benchmarks/release.sh --benchmarks $OUT, then python benchmarks/readme_numbers.py --write"
