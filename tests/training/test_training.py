"""Training: the loss decreases, runs are seeded, and a killed run resumes exactly."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH
from vgnn_core.phonons.dynamical_matrix import band_frequencies
from vgnn_core.phonons.force_constants import central_spring_force_constants
from vgnn_core.pretrained.registry import load_checkpoint
from vgnn_core.training.petretto import PhononRecord, to_sample
from vgnn_core.training.samples import PhononSample
from vgnn_core.training.train import TrainConfig, lr_factor, train

TINY = {"kind": "kmvn", **TINY_ARCH}


def spring_sample(structure, name, k=3.0) -> PhononSample:
    """A 'DFPT' record whose truth is an exactly solvable spring model."""
    q = np.random.default_rng(0).random((12, 3)) - 0.5
    q[0] = 0
    fc = central_spring_force_constants(structure, lambda r: k * np.exp(-(r - 2.4) ** 2), r_max=4.0)
    bands = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    s = structure.copy()
    s.properties = {"material_id": name}
    return to_sample(PhononRecord(name, s, q, bands), r_max=4.0)


@pytest.fixture
def samples(si_primitive, rocksalt_nacl, wurtzite_zno, perovskite_srtio3):
    structs = [si_primitive, rocksalt_nacl, wurtzite_zno, perovskite_srtio3]
    return [spring_sample(s, f"toy-{i}") for i, s in enumerate(structs)]


def cfg(epochs, **kw):
    return TrainConfig(epochs=epochs, batch_size=2, lr=5e-3, q_per_material=6, model=dict(TINY), patience=100, **kw)


def test_schedule_warms_up_and_decays():
    c = TrainConfig(epochs=10, warmup_epochs=1)
    f = [lr_factor(s, 10, c) for s in range(100)]
    assert f[0] < 0.2 and max(f) == pytest.approx(1.0, abs=0.01) and f[-1] < 0.05


def test_loss_decreases_and_best_checkpoint_written(tmp_path, samples):
    state = train(samples[:3], samples[3:], cfg(6), tmp_path, progress=None)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and log[-1]["train_nmse"] < log[0]["train_nmse"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.checkpoint_metadata["epoch"] == state["best_epoch"]


def test_losses_are_the_reported_metrics(samples):
    """Each training loss, on a batch of predictions, is the evaluation metric of the same name
    averaged over materials (the MAE loss in units of MAE_SCALE_CM1)."""
    from vgnn_core.training.loss import LOSSES, MAE_SCALE_CM1
    from vgnn_core.training.metrics import material_metrics

    rng = np.random.default_rng(1)
    truths = [torch.as_tensor(s.bands) for s in samples]
    preds = [t + torch.as_tensor(rng.normal(0, 5.0, t.shape)) for t in truths]
    for name, scale in (("nmse", 1.0), ("mae", MAE_SCALE_CM1)):
        expected = np.mean([material_metrics(p.numpy(), t.numpy())[name] for p, t in zip(preds, truths)])
        assert float(LOSSES[name](preds, truths)) * scale == pytest.approx(expected, rel=1e-12)


def test_mae_loss_trains_and_is_logged_by_name(tmp_path, samples):
    train(samples[:3], samples[3:], cfg(4, loss="mae"), tmp_path, progress=None)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["train_mae"] < log[0]["train_mae"] and "train_nmse" not in log[0]
    with pytest.raises(ValueError, match="loss must be one of"):
        train(samples[:3], samples[3:], cfg(1, loss="huber"), tmp_path / "bad", progress=None)


@pytest.mark.parametrize("ema_decay", [0.0, 0.8])
def test_resume_is_exact(tmp_path, samples, ema_decay):
    straight = tmp_path / "straight"
    train(samples[:3], samples[3:], cfg(5, ema_decay=ema_decay), straight, progress=None)
    interrupted = tmp_path / "interrupted"

    class Killed(Exception):
        pass

    def kill_after_epoch_3(message):
        if message.startswith("epoch 3/"):
            raise Killed  # the process dies right after epoch 3 was checkpointed ...

    with pytest.raises(Killed):
        train(samples[:3], samples[3:], cfg(5, ema_decay=ema_decay), interrupted, progress=kill_after_epoch_3)
    train(samples[:3], samples[3:], cfg(5, ema_decay=ema_decay), interrupted, resume=True, progress=None)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(interrupted / "last.pt", weights_only=True)
    for part in ("model", "ema") if ema_decay else ("model",):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=0)
    if ema_decay:  # the averaged weights differ from the raw ones and are what best.pt holds
        assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])


def with_blocks(sample: PhononSample, structure, k=3.0) -> PhononSample:
    """The spring model's exact off-site blocks as DFT-like block targets of ``sample``."""
    from dataclasses import replace

    fc = central_spring_force_constants(structure, lambda r: k * np.exp(-(r - 2.4) ** 2), r_max=4.0)
    n_off = fc.n_bonds - fc.n_atoms  # off-site bonds first, in graph edge order
    assert n_off == sample.graph.n_edges
    return replace(sample, block_edges=np.arange(n_off), block_values=fc.blocks[:n_off].numpy(), source="phonondb")


def test_block_error_is_the_mass_weighted_block_mae(samples, si_primitive):
    from vgnn_core.crystal.graph import collate
    from vgnn_core.nn.model import VGNN
    from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_CM1
    from vgnn_core.training.train import BLOCK_ERROR_FREQUENCY_CM1, block_error_cm1

    s = with_blocks(samples[0], si_primitive)
    torch.manual_seed(0)
    model = VGNN(**{**TINY, "full_blocks": True}).double()
    (fc,) = model.force_constants(collate([s.graph], dtype=torch.float64))
    err = float(block_error_cm1(fc, s.block_edges, s.block_values).detach())
    pred = fc.blocks[: len(s.block_edges)].detach().numpy()
    m = s.graph.masses
    inv = 1 / np.sqrt(m[s.graph.edge_src] * m[s.graph.edge_dst])
    by_hand = np.abs((pred - s.block_values) * inv[:, None, None]).mean()
    assert err == pytest.approx(by_hand * EV_ANGSTROM2_AMU_TO_CM1**2 / (2 * BLOCK_ERROR_FREQUENCY_CM1), rel=1e-9)


def test_block_supervision_trains_and_validation_reports_each_source(tmp_path, samples, si_primitive, rocksalt_nacl):
    blocked = [with_blocks(samples[0], si_primitive), with_blocks(samples[1], rocksalt_nacl)]
    c = cfg(5, loss="mae", block_weight=1.0)
    c.model["full_blocks"] = True
    train(blocked + samples[2:3], [samples[3], blocked[1]], c, tmp_path, progress=None)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["train_mae"] < log[0]["train_mae"]
    rec = log[-1]
    assert {"val_mae_petretto2018", "val_mae_phonondb"} <= set(rec)
    assert rec["val_mae"] == pytest.approx(0.5 * (rec["val_mae_petretto2018"] + rec["val_mae_phonondb"]))


def test_full_block_model_warm_starts_from_a_symmetric_one(tmp_path, samples):
    from vgnn_core.crystal.graph import collate
    from vgnn_core.nn.model import VGNN
    from vgnn_core.pretrained.registry import save_checkpoint
    from vgnn_core.training.weights import warm_start

    torch.manual_seed(4)
    source = VGNN(**TINY)
    save_checkpoint(source, tmp_path / "sym.pt")
    target = VGNN(**{**TINY, "full_blocks": True})
    warm_start(target, load_checkpoint(tmp_path / "sym.pt"), "sym.pt")
    batch = collate([s.graph for s in samples])
    for a, b in zip(source.force_constants(batch), target.force_constants(batch)):
        torch.testing.assert_close(a.blocks, b.blocks)  # same predictions at the start
    with pytest.raises(ValueError, match="architecture does not match"):
        warm_start(VGNN(**{**TINY, "embed_dim": 16}), source, "sym.pt")


def test_training_data_sources_are_checked():
    from vgnn_core.training.data import training_data

    with pytest.raises(ValueError, match="unknown training data"):
        training_data(TrainConfig(data=["petretto2018", "materials-cloud"]))


def test_block_loss_needs_the_mae_loss(tmp_path, samples, si_primitive):
    blocked = [with_blocks(samples[0], si_primitive)]
    c = cfg(1, loss="nmse")
    with pytest.raises(ValueError, match="block loss is on the scale of the mae loss"):
        train(blocked + samples[1:3], samples[3:], c, tmp_path, progress=None)


def test_stop_after_keeps_the_schedule_and_resumes_exactly(tmp_path, samples):
    """A run stopped after epoch 2 of a 5-epoch schedule and resumed equals the straight run."""
    straight, sliced = tmp_path / "straight", tmp_path / "sliced"
    train(samples[:3], samples[3:], cfg(5), straight, progress=None)
    state = train(samples[:3], samples[3:], cfg(5), sliced, progress=None, stop_after=2)
    assert state["epoch"] == 2
    log = [json.loads(x) for x in (sliced / "log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == [r["lr"] for r in straight_log[:2]]  # the 5-epoch schedule
    train(samples[:3], samples[3:], cfg(5), sliced, resume=True, progress=None)
    a, b = (torch.load(d / "last.pt", weights_only=True)["model"] for d in (straight, sliced))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resuming_with_another_schedule_keeps_the_first_on_record(tmp_path, samples):
    """Stopped after epoch 2 of a 5-epoch schedule and resumed with 3 epochs in all: the run's
    train_config.json holds the new settings and, under ``resumed``, the ones epochs 1–2 ran with."""
    train(samples[:3], samples[3:], cfg(5), tmp_path, progress=None, stop_after=2)
    train(samples[:3], samples[3:], cfg(3), tmp_path, resume=True, progress=None)
    recorded = json.loads((tmp_path / "train_config.json").read_text())
    assert recorded["epochs"] == 3
    (first,) = recorded["resumed"]
    assert first["until_epoch"] == 2 and first["config"]["epochs"] == 5
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    # resumed again with the same settings: nothing new to record
    train(samples[:3], samples[3:], cfg(3), tmp_path, resume=True, progress=None)
    assert json.loads((tmp_path / "train_config.json").read_text())["resumed"] == recorded["resumed"]
