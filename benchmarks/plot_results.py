"""One figure from the saved benchmark results: accuracy against cost per material (k-MVN, MVN,
CHGNet + phonopy on the Petretto test set) and cost against cell size (CPU and GPU).

Reads ``results/vs_mlip.json``, ``results/scaling.json`` and, when present,
``results/scaling_cuda.json``; writes ``results/benchmarks.png``.
Run: ``python benchmarks/plot_results.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def accuracy_vs_cost(ax, vs_mlip: dict) -> None:
    rows = vs_mlip["materials"]
    routes = (("k-MVN: bands + C_v mesh, alone", "kmvn_s", "kmvn_bands_mae", "C0"),
              ("k-MVN: the same, batched", "kmvn_batched_s", "kmvn_bands_mae", "C9"),
              ("MVN: Γ, alone", "mvn_s", "mvn_gamma_mae", "C2"),
              ("CHGNet + phonopy: bands", "mlip_s", "mlip_bands_mae", "C3"))
    for label, t, err, colour in routes:
        pts = [(r[t], r[err]) for r in rows if t in r and err in r]
        ax.scatter(*zip(*pts), s=9, alpha=0.5, color=colour, label=label)
    ax.set(xscale="log", yscale="log", xlabel="wall seconds per material", ylabel="MAE against DFPT (cm⁻¹)",
           title=f"{len(rows)} Petretto test materials ({vs_mlip['machine'].split(',')[1].strip()})")
    ax.legend(fontsize=8)


def cost_vs_size(ax, scaling: dict, gpu: dict | None) -> None:
    """Lines through the Si supercells, open markers for the zeolites (a different family:
    many symmetry-distinct atoms, so many more MLIP displacements)."""
    def series(data, key, zeolites):
        pts = sorted((r["atoms"], r[key]) for r in data["rows"]
                     if r.get(key) and r["case"].startswith("zeolite") == zeolites)
        return zip(*pts) if pts else ((), ())

    curves = [(scaling, "kmvn_net_s", "o", "C0", "k-MVN network, CPU"),
              (scaling, "kmvn_eig_s", "s", "C9", "eigen-solve 100 q, CPU"),
              (scaling, "mlip_s", "^", "C3", "CHGNet + phonopy, CPU")]
    if gpu:
        curves += [(gpu, "kmvn_net_s", "o", "C1", "k-MVN network, H100"),
                   (gpu, "kmvn_eig_s", "s", "C8", "eigen-solve 100 q, H100")]
    for data, key, marker, colour, label in curves:
        ax.loglog(*series(data, key, False), marker + "-", color=colour, label=label + " (Si)")
        ax.loglog(*series(data, key, True), marker, color=colour, mfc="none", ms=8)
    ax.set(xlabel="atoms per cell", ylabel="seconds",
           title="cost against cell size (lines: Si supercells; open: zeolites)")
    ax.legend(fontsize=7)


def main() -> None:
    vs_mlip, scaling, gpu = load("vs_mlip.json"), load("scaling.json"), load("scaling_cuda.json")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    if vs_mlip:
        accuracy_vs_cost(axes[0], vs_mlip)
    if scaling:
        cost_vs_size(axes[1], scaling, gpu)
    fig.tight_layout()
    fig.savefig(RESULTS / "benchmarks.png", dpi=110)
    print(f"wrote {RESULTS / 'benchmarks.png'}")


if __name__ == "__main__":
    main()
