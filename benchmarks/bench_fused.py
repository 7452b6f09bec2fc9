"""The fused tensor products (:mod:`vgnn_core.nn.fused`) against e3nn's two modules, in one process.

:func:`unfused` evaluates the networks the way they were before the fusing (each e3nn tensor
product, then its linear mix, then e3nn's gate): same parameters, another order of the sums.
With it, on Togo structures spread over the 10,034 (every tenth, the first ``--limit``):

1. the shipped k-MVN ensemble's forward passes (bond blocks of every member), batches of
   ``--batch-size``, torch's 2 threads, both ways interleaved for ``--repeats`` rounds;
2. one training step of one member (forward, backward, Adam; one thread), both ways interleaved;
3. where the forward passes spend their CPU time, both ways (``torch.profiler``, one batch: the
   shares of concatenations, copies, elementwise and matrix products);
4. what the fusing changes in the shipped models' results: the largest difference of the bond
   blocks, and of the bands and Γ frequencies of ``predict_phonons`` (cm⁻¹).

Prints a table and writes ``results/fused/fused.json``. Run: ``python benchmarks/bench_fused.py``.
The tests (``tests/nn/test_fused.py``) use :func:`unfused` as their reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vgnn_core.nn.convolution import Interaction
from vgnn_core.nn.readouts import BondReadout

RESULTS = Path(__file__).parent / "results" / "fused"


def _interaction_unfused(self, h, edge_src, edge_dst, edge_sh, edge_radial, neighbours=None):
    neighbours = h if neighbours is None else neighbours
    messages = self.tp(self.linear_in(neighbours)[edge_dst], edge_sh, self.radial(edge_radial))
    agg = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device).index_add_(0, edge_src, messages)
    out = self.gate(self.linear_out(agg / self.avg_num_neighbors) + self.self_connection(h))
    return out + h if self.residual else out


def _bond_messages_unfused(self, h, src, dst, y_even, y_odd, radial):
    h_i, h_j = h[src], h[dst]
    w = self.radial(radial)
    v = (self.linear_even(self.tp_even(h_i + h_j, y_even, w[:, : self.n_even]))
         + self.linear_odd(self.tp_odd(h_i - h_j, y_odd, w[:, self.n_even:])))
    symmetric = self.linear_out(self.gate(v))
    if not self.full_blocks:
        return symmetric, None
    wa = self.radial_anti(radial)
    axial = (self.linear_anti_even(self.tp_anti_even(h_i - h_j, y_even, wa[:, : self.n_anti_even]))
             + self.linear_anti_odd(self.tp_anti_odd(h_i + h_j, y_odd, wa[:, self.n_anti_even:])))
    return symmetric, axial


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """Within it, every network runs e3nn's tensor products, linear mixes and gates one after another."""
    from unittest import mock

    with mock.patch.object(Interaction, "forward", _interaction_unfused), \
            mock.patch.object(BondReadout, "bond_messages", _bond_messages_unfused):
        yield


def every_tenth_togo(limit: int) -> list:
    """Togo structures spread over the 10,034: every tenth, the first ``limit`` of them."""
    from flows.sources.phonondb import togo_source

    out = []
    for k, item in enumerate(togo_source()):
        if k % 10 == 0:
            out.append(item.structure)
            if len(out) >= limit:
                break
    return out


def _op_shares(fn) -> dict[str, float]:
    """Shares of self CPU time of the main aten operators while ``fn`` runs."""
    with torch.profiler.profile() as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = ("aten::cat", "aten::copy_", "aten::mul", "aten::addcmul_", "aten::bmm", "aten::mm", "aten::addmm_")
    return {op: sum(e.self_cpu_time_total for e in events if e.key == op) / total for op in ops}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    from vgnn_core import VGNN, build_graph, collate
    from vgnn_core.predict import load_pretrained
    from vgnn_core.pretrained import load_pretrained_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="Togo structures (every tenth of the 10,034)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=int, default=60, help="structures whose predictions are compared")
    parser.add_argument("--json", default=str(RESULTS / "fused.json"))
    args = parser.parse_args()

    torch.set_num_threads(2)
    structures = every_tenth_togo(args.limit)
    model = load_pretrained_model("kmvn").eval()
    graphs = [build_graph(s, model.config.graph_cutoff) for s in structures]
    batches = [collate(graphs[i:i + args.batch_size]) for i in range(0, len(graphs), args.batch_size)]

    def forward() -> None:
        with torch.no_grad():
            for b in batches:
                model.member_bond_blocks(b)

    def unfused_forward() -> None:
        with unfused():
            forward()

    member = VGNN(model.config)
    member.load_state_dict(model.members[0].state_dict())
    optimizer = torch.optim.Adam(member.parameters(), 1e-5)
    train_batches = [collate(graphs[i:i + 16]) for i in range(0, min(64, len(graphs)), 16)]

    def train() -> None:
        torch.set_num_threads(1)
        try:
            for b in train_batches:
                optimizer.zero_grad()
                (member.bond_blocks(b) ** 2).mean().backward()
                optimizer.step()
        finally:
            torch.set_num_threads(2)

    def unfused_train() -> None:
        with unfused():
            train()

    forward(), unfused_forward(), train(), unfused_train()  # warm-up
    times: dict[str, list[float]] = {"forward": [], "forward_unfused": [], "train": [], "train_unfused": []}
    for _ in range(args.repeats):  # interleaved, so a drift of the machine hits both alike
        times["forward"].append(_timed(forward))
        times["forward_unfused"].append(_timed(unfused_forward))
        times["train"].append(_timed(train))
        times["train_unfused"].append(_timed(unfused_train))

    def one_batch() -> None:
        with torch.no_grad():
            model.member_bond_blocks(batches[0])

    def one_batch_unfused() -> None:
        with unfused():
            one_batch()

    shares = {"fused": _op_shares(one_batch), "unfused": _op_shares(one_batch_unfused)}
    with torch.no_grad():
        fused_blocks = model.member_bond_blocks(batches[0])
        with unfused():
            e3nn_blocks = model.member_bond_blocks(batches[0])
    predictor = load_pretrained("kmvn")
    subset = structures[:args.compare]
    new = predictor.predict_phonons(subset)
    with unfused():
        old = predictor.predict_phonons(subset)
    band_diff = np.array([np.abs(a.bands - b.bands).max() for a, b in zip(new, old)])
    gamma_diff = np.array([np.abs(a.gamma - b.gamma).max() for a, b in zip(new, old)])

    n = len(structures)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "structures": n, "atoms_mean": float(np.mean([len(s) for s in structures])),
        "batch_size": args.batch_size, "repeats": args.repeats,
        "forward_ms_per_material": {"fused": 1000 * best["forward"] / n, "unfused": 1000 * best["forward_unfused"] / n},
        "forward_speedup": best["forward_unfused"] / best["forward"],
        "train_step_s_per_64": {"fused": best["train"], "unfused": best["train_unfused"]},
        "train_speedup": best["train_unfused"] / best["train"],
        "samples_s": times,
        "cpu_share_by_operator": shares,
        "max_block_diff_relative": float((fused_blocks - e3nn_blocks).abs().max() / e3nn_blocks.abs().max()),
        "compared": len(subset),
        "bands_max_abs_diff_cm1": float(band_diff.max()), "bands_median_max_diff_cm1": float(np.median(band_diff)),
        "gamma_max_abs_diff_cm1": float(gamma_diff.max()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}",
        "torch": torch.__version__,
    }
    print(f"{n} Togo structures ({result['atoms_mean']:.1f} atoms mean), shipped k-MVN ensemble, fastest of {args.repeats}")
    print(f"{'':36s} {'fused':>10s} {'e3nn':>10s} {'speed-up':>9s}")
    print(f"{'forward passes, ms / material':36s} {result['forward_ms_per_material']['fused']:10.2f} "
          f"{result['forward_ms_per_material']['unfused']:10.2f} {result['forward_speedup']:8.2f}×")
    print(f"{'training step, s / 64 structures':36s} {best['train']:10.3f} {best['train_unfused']:10.3f} "
          f"{result['train_speedup']:8.2f}×")
    for op in shares["fused"]:
        print(f"{'  CPU share, ' + op:36s} {100 * shares['fused'][op]:9.1f}% {100 * shares['unfused'][op]:9.1f}%")
    print(f"bond blocks differ by ≤ {result['max_block_diff_relative']:.1e} of the largest; over {len(subset)} "
          f"structures the bands by ≤ {band_diff.max():.1e} cm⁻¹ (median {np.median(band_diff):.1e}), Γ by ≤ "
          f"{gamma_diff.max():.1e}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
