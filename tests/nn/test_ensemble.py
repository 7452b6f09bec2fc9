"""Ensembles: the mean of their members' force constants, with the physics of one model."""

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH as TINY
from vgnn_core import (
    VGNN,
    VVN,
    Predictor,
    VGNNEnsemble,
    dynamical_matrices,
    load_checkpoint,
    save_checkpoint,
)


def members(kind: str, n: int = 3, **kw) -> list[VGNN]:
    out = []
    for seed in range(n):
        torch.manual_seed(10 + seed)
        out.append(VGNN(kind=kind, **kw).double())
    return out


@pytest.mark.parametrize("kind", ["kmvn", "mvn"])
def test_ensemble_force_constants_are_the_members_mean(kind, monoclinic_zro2, wurtzite_zno):
    models = members(kind)
    (ens,) = [Predictor(VGNNEnsemble(models))]
    fcs = ens.predict_force_constants([monoclinic_zro2, wurtzite_zno])
    each = [Predictor(m).predict_force_constants([monoclinic_zro2, wurtzite_zno]) for m in models]
    for k, fc in enumerate(fcs):
        mean = sum(e[k].blocks for e in each) / len(each)
        torch.testing.assert_close(fc.blocks, mean, rtol=0, atol=1e-12)
        assert float(fc.acoustic_sum_residual()) < 1e-12
        gamma = ens.predict_gamma([[monoclinic_zro2, wurtzite_zno][k]])[0]
        assert np.sort(np.abs(gamma))[:3].max() < 1e-3  # exact acoustic modes, as for one model


def test_ensemble_dynamical_matrix_is_hermitian_and_the_mean_of_its_members(perovskite_srtio3):
    models = members("kmvn", 2)
    (fc,) = Predictor(VGNNEnsemble(models)).predict_force_constants([perovskite_srtio3])
    q = torch.as_tensor(np.random.default_rng(1).random((12, 3)) - 0.5)
    d = dynamical_matrices(fc, q)
    assert torch.allclose(d, d.conj().transpose(-1, -2), atol=1e-13)
    each = [dynamical_matrices(Predictor(m).predict_force_constants([perovskite_srtio3])[0], q) for m in models]
    torch.testing.assert_close(d, (each[0] + each[1]) / 2, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["kmvn", "mvn"])
def test_members_assembled_together_equal_each_alone_and_give_the_mean(kind, monoclinic_zro2, wurtzite_zno):
    """assemble_members: each member's force constants as one network assembles them, the K of a
    crystal on shared bonds; their mean is the mean blocks' assembly (the rules are linear), and
    the ensemble gives the same force constants with and without its members' agreement."""
    from vgnn_core.crystal.graph import build_graph, collate
    from vgnn_core.phonons.force_constants import mean_force_constants

    ens = VGNNEnsemble(members(kind, full_blocks=True, r_bond=6.0))
    batch = collate([build_graph(s, ens.config.graph_cutoff) for s in (monoclinic_zro2, wurtzite_zno)],
                    dtype=torch.float64)
    with torch.no_grad():
        blocks = ens.member_bond_blocks(batch)
        each = ens.assemble_members(batch, blocks)
        alone = [ens.assemble(batch, b) for b in blocks]
        from_mean = ens.assemble(batch, blocks.mean(0))
        plain = ens.force_constants(batch)
        with_agreement, _ = ens.force_constants_and_agreement(batch)
    assert [len(c) for c in each] == [3, 3]
    for g, crystal in enumerate(each):
        assert all(fc.src is crystal[0].src and fc.shift is crystal[0].shift for fc in crystal)
        scale = float(torch.abs(from_mean[g].blocks).max())
        for k, fc in enumerate(crystal):
            torch.testing.assert_close(fc.blocks, alone[k][g].blocks, rtol=0, atol=1e-13 * scale)
            assert float(fc.acoustic_sum_residual()) < 1e-12 * scale
        mean = mean_force_constants(crystal)
        torch.testing.assert_close(mean.blocks, from_mean[g].blocks, rtol=0, atol=1e-13 * scale)
        torch.testing.assert_close(plain[g].blocks, mean.blocks, rtol=0, atol=0)
        torch.testing.assert_close(with_agreement[g].blocks, mean.blocks, rtol=0, atol=0)
    with pytest.raises(ValueError, match="different bonds"):
        mean_force_constants([each[0][0], each[1][0]])


def test_ensemble_checkpoint_roundtrip(tmp_path, wurtzite_zno):
    ens = VGNNEnsemble([m.float() for m in members("kmvn", 2)])
    path = tmp_path / "ens.pt"
    save_checkpoint(ens, path, {"note": "two members"})
    back = load_checkpoint(path)
    assert isinstance(back, VGNNEnsemble) and len(back.members) == 2
    # members of one config are built once and copied (vgnn_core.nn.copies.built_once): nothing may be shared
    storages = [{p.data_ptr() for p in m.parameters()} for m in back.members]
    assert not storages[0] & storages[1]
    for mine, theirs in zip(back.members, ens.members):
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    q = [np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1 / 3, 1 / 3, 0.0]])]
    np.testing.assert_array_equal(Predictor(ens).predict_bands([wurtzite_zno], q)[0],
                                  Predictor(back).predict_bands([wurtzite_zno], q)[0])


def test_ensemble_refuses_mismatched_members():
    with pytest.raises(ValueError, match="at least two"):
        VGNNEnsemble(members("kmvn", 1, **TINY))
    with pytest.raises(ValueError, match="share the kind and the graph"):
        VGNNEnsemble([VGNN(kind="kmvn", **TINY), VGNN(kind="kmvn", r_bond=6.0, **TINY)])
    with pytest.raises(ValueError, match="share the kind"):
        VGNNEnsemble([VGNN(kind="kmvn", **TINY), VGNN(kind="mvn", **TINY)])
    with pytest.raises(ValueError, match="VVN"):
        VGNNEnsemble([VVN(), VVN()])


def test_ensemble_of_training_runs_through_the_cli_and_its_card(tmp_path, si_primitive, rocksalt_nacl, wurtzite_zno):
    """`vgnn ensemble RUN RUN --out DIR` writes a checkpoint whose model card names each run."""
    from flows.cli import main
    from tests.training.test_training import TINY, spring_sample
    from vgnn_core.pretrained.cards import _training_lines, training_summary
    from vgnn_core.training.train import TrainConfig, train

    samples = [spring_sample(s, f"toy-{i}") for i, s in enumerate([si_primitive, rocksalt_nacl, wurtzite_zno])]
    runs = []
    for seed in (0, 1):
        cfg = TrainConfig(epochs=2, batch_size=2, q_per_material=4, model=dict(TINY), seed=seed)
        train(samples[:2], samples[2:], cfg, tmp_path / f"run{seed}", progress=None)
        runs.append(str(tmp_path / f"run{seed}"))
    out = tmp_path / "ens"
    assert main(["ensemble", *runs, "--out", str(out)]) == 0
    ens = load_checkpoint(out / "best.pt")
    assert isinstance(ens, VGNNEnsemble) and ens.checkpoint_metadata["members"] == runs
    singles = [load_checkpoint(tmp_path / f"run{seed}" / "best.pt") for seed in (0, 1)]
    (fc,) = Predictor(ens).predict_force_constants([wurtzite_zno])
    each = [Predictor(m).predict_force_constants([wurtzite_zno])[0].blocks for m in singles]
    torch.testing.assert_close(fc.blocks, (each[0] + each[1]) / 2, rtol=1e-6, atol=1e-9)
    summary = training_summary(out)
    assert [m["train_config"]["seed"] for m in summary["ensemble_of"]] == [0, 1]
    lines = _training_lines(summary)
    assert lines[0].startswith("- training: an ensemble of 2") and len(lines) == 3


def test_kmvn_runs_read_as_an_mvn_give_the_kmvn_gamma(tmp_path, wurtzite_zno):
    from vgnn_core.pretrained.registry import combine_runs

    for k in range(2):
        torch.manual_seed(20 + k)
        run = tmp_path / f"run{k}"
        run.mkdir()
        save_checkpoint(VGNN(kind="kmvn", r_bond=5.0, full_blocks=True, **TINY), run / "best.pt")
    kmvn = combine_runs([tmp_path / "run0", tmp_path / "run1"], tmp_path / "k")
    mvn = combine_runs([tmp_path / "run0", tmp_path / "run1"], tmp_path / "m", kind="mvn")
    assert mvn.kind == "mvn" and not mvn.supports_bands
    a = Predictor(kmvn.double()).predict_gamma([wurtzite_zno])[0]
    b = Predictor(load_checkpoint(tmp_path / "m" / "best.pt").double()).predict_gamma([wurtzite_zno])[0]
    np.testing.assert_allclose(b, a, atol=1e-3)


def test_an_mvn_holding_the_kmvns_weights_loads_on_its_networks(tmp_path, wurtzite_zno):
    """``load_checkpoint(share_with=)``: the MVN checkpoint of a k-MVN's weights runs the loaded
    k-MVN's modules and predicts what it predicts loaded alone; any other checkpoint gets networks
    of its own."""
    from vgnn_core.files import file_digest

    kmvn_members = [m.float() for m in members("kmvn", 2, **TINY)]
    save_checkpoint(VGNNEnsemble(kmvn_members), tmp_path / "k.pt")
    save_checkpoint(VGNNEnsemble(kmvn_members).read_as("mvn"), tmp_path / "m.pt", {"role": "mvn"})
    kmvn = load_checkpoint(tmp_path / "k.pt")
    mvn = load_checkpoint(tmp_path / "m.pt", share_with=[kmvn])
    assert mvn.kind == "mvn" and kmvn.kind == "kmvn" and not mvn.supports_bands
    assert all(a.backbone is b.backbone and a.readout is b.readout for a, b in zip(mvn.members, kmvn.members))
    assert mvn.checkpoint_metadata == {"role": "mvn"} and mvn.checkpoint_sha256 == file_digest(tmp_path / "m.pt")
    alone = load_checkpoint(tmp_path / "m.pt")
    assert not any(a.backbone is b.backbone for a, b in zip(alone.members, kmvn.members))
    np.testing.assert_array_equal(Predictor(mvn).predict_gamma([wurtzite_zno])[0],
                                  Predictor(alone).predict_gamma([wurtzite_zno])[0])

    def own_networks(model):
        return not any(a.backbone is b.backbone for a in model.members for b in kmvn.members)

    # one weight off by 1e-6, another config, one network instead of two: each built on its own
    nudged = [m.read_as("mvn") for m in members("kmvn", 2, **TINY)]
    with torch.no_grad():
        next(nudged[1].parameters()).view(-1)[0] += 1e-6
    save_checkpoint(VGNNEnsemble([m.float() for m in nudged]), tmp_path / "nudged.pt")
    assert own_networks(load_checkpoint(tmp_path / "nudged.pt", share_with=[kmvn]))
    save_checkpoint(VGNNEnsemble(members("mvn", 2, r_bond=5.0, **TINY)), tmp_path / "other.pt")
    assert own_networks(load_checkpoint(tmp_path / "other.pt", share_with=[kmvn]))
    save_checkpoint(kmvn_members[0].read_as("mvn"), tmp_path / "single.pt")
    single = load_checkpoint(tmp_path / "single.pt", share_with=[kmvn, VVN(**TINY)])
    assert single.backbone is not kmvn.members[0].backbone
