"""What the LO–TO correction costs a database build: ``predict_phonons`` with and without NAC.

For N Togo structures (evenly spread over the 10,034, as ``bench_properties.py`` picks them) the
shipped k-MVN runs the build's whole per-material calculation (network, uncertainty, bands, mesh,
DOS, thermal properties) three ways in one process, each after a warm-up, in interleaved rounds
(``--repeats``; each variant's fastest round counts, as ``timeit`` does, so a slow spell of a shared
machine or the order of the variants does not decide the ratio):

- ``off``: no NAC (what ``vgnn build`` does without ``--nac``);
- ``nac``: ``nac=True`` as it runs now — the Born heads read the atom features of the same
  backbone pass as the force constants;
- ``nac_second_pass``: ``nac=True`` with the Born heads on their own copy of the backbone (one
  more backbone pass per batch: how it ran before the pass was shared).

Checks that every material's force constants are the same with and without NAC, and prints the
seconds per material, the ratios to ``off`` and how many materials got the correction (metals and
one-atom cells do not). Writes ``benchmarks/results/nac_cost.json``.
Run: ``python benchmarks/bench_nac.py [--limit N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_properties import RESULTS, sample_structures

from flows.plan import BuildSettings
from vgnn_core import Predictor, load_pretrained
from vgnn_core.pretrained.registry import load_born_model

SETTINGS = BuildSettings()


def run(predictor: Predictor, structures: list, nac: bool | None) -> tuple[list, float]:
    """One timed round (after an untimed warm-up): the results and the seconds for all structures."""
    options = dict(density=SETTINGS.mesh_density, temperatures=SETTINGS.temperature_array, nac=nac)
    predictor.predict_phonons(structures[:2], **options)  # warm-up, untimed
    t0 = time.perf_counter()
    results = predictor.predict_phonons(structures, **options)
    return results, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="structures (evenly spread over Togo's 10,034)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the fastest of each variant counts")
    parser.add_argument("--json", default=str(RESULTS / "nac_cost.json"))
    args = parser.parse_args()
    structures = sample_structures(args.limit)
    shared = load_pretrained("kmvn", batch_size=args.batch_size)
    model = shared.model
    separate = Predictor(model, batch_size=args.batch_size, born_model=load_born_model(copy.deepcopy(model)))
    assert separate.born_model.member_positions(model) is None and shared.born_model.member_positions(model)
    variants = {"off": (shared, None), "nac": (shared, True), "nac_second_pass": (separate, True)}
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    latest: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, (predictor, nac_option) in variants.items():
            latest[name], seconds = run(predictor, structures, nac_option)
            rounds[name].append(seconds)
    off, nac, second = (latest[name] for name in variants)
    t_off, t_nac, t_second = (min(rounds[name]) for name in variants)
    for a, b, c in zip(off, nac, second):
        assert torch.equal(a.force_constants.blocks, b.force_constants.blocks), f"{a.name}: NAC changed the force constants"
        np.testing.assert_allclose(b.bands, c.bands, atol=1e-6, err_msg=f"{a.name}: shared pass differs")
    n = len(structures)
    got = sum(r.has_nac for r in nac)
    atoms = np.array([len(s) for s in structures])
    print(f"{n} Togo structures ({atoms.mean():.1f} atoms mean, {atoms.max()} max), shipped k-MVN "
          f"({len(model.members)} members), {platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); NAC applied to {got} of {n}; "
          f"fastest of {args.repeats} interleaved rounds")
    print(f"{'predict_phonons (build settings)':<44}{'s / material':>14}{'vs off':>9}")
    for label, seconds in [("off", t_off), ("nac (shared backbone pass)", t_nac),
                           ("nac (second backbone pass, before)", t_second)]:
        print(f"{label:<44}{seconds / n:>14.4f}{seconds / t_off:>8.2f}×")
    RESULTS.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "n_materials": n, "atoms_mean": float(atoms.mean()), "n_with_nac": int(got),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "rounds_seconds_per_material": {name: [t / n for t in ts] for name, ts in rounds.items()},
        "seconds_per_material": {"off": t_off / n, "nac": t_nac / n, "nac_second_pass": t_second / n},
        "ratio_to_off": {"nac": t_nac / t_off, "nac_second_pass": t_second / t_off},
    }, indent=1))


if __name__ == "__main__":
    main()
