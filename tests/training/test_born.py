"""Born-charge / ε∞ heads on real Petretto DFPT data: the records' dielectric block, training
and checkpoints, and the shipped heads against the per-element baseline on val materials."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vgnn_core.nn.born import BornHeads, backbone_irreps
from vgnn_core.phonons.nac import NonAnalyticCorrection
from vgnn_core.pretrained.registry import load_pretrained_model
from vgnn_core.settings import shared_data_dir
from vgnn_core.training import petretto
from vgnn_core.training.born import (
    TOGO_BORN_RELATIVE,
    BornTrainConfig,
    ElementBaseline,
    attach_features,
    average,
    dielectric_from_record,
    dielectric_metrics,
    load_backbones,
    load_dielectric,
    load_heads,
    load_togo_born,
    physical_targets,
    predict_heads,
    run,
    save_heads,
    train_heads,
)

SHIPPED = Path(__file__).parents[2] / "vgnn_core" / "pretrained" / "checkpoints" / "born_heads.pt"
#: the first val materials in archive order (read without decompressing the rest)
VAL_IDS = ["mp-1009009", "mp-1009085", "mp-1009088", "mp-1009813", "mp-1018096", "mp-10281", "mp-10381",
           "mp-10481", "mp-10680", "mp-10969"]


@pytest.fixture(scope="module")
def backbone():
    """The shipped k-MVN's members the shipped heads were trained on (all members without heads)."""
    from vgnn_core.nn.born import select_members

    model = load_pretrained_model("kmvn")
    if SHIPPED.is_file():
        model = select_members(model, load_heads(SHIPPED)[1]["backbone_members_sha256"])
    return model


@pytest.fixture(scope="module")
def val_samples(petretto_archive, backbone):
    split = petretto.load_split(Path(petretto_archive).parent / "split.json")
    assert set(VAL_IDS) <= set(split["val"])
    samples = load_dielectric(VAL_IDS, r_max=backbone.config.r_max, archive=petretto_archive)
    attach_features(backbone, samples)
    return samples


def test_records_give_neutral_charges_and_symmetric_epsilon(val_samples, petretto_archive):
    assert [s.material_id for s in val_samples] == VAL_IDS
    for s in val_samples:
        assert s.born.shape == (s.graph.n_atoms, 3, 3) and s.features.shape[0] == s.graph.n_atoms
        np.testing.assert_allclose(s.born.sum(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(s.epsilon, s.epsilon.T)
        assert np.linalg.eigvalsh(s.epsilon).min() > 1.0
        # the record's NaCl-like cubic binaries: isotropic, opposite charges
    nacl_like = val_samples[0]  # mp-1009009, a rock-salt binary
    assert len(nacl_like.born) == 2
    np.testing.assert_allclose(nacl_like.born[0], -nacl_like.born[1], atol=1e-12)
    np.testing.assert_allclose(nacl_like.born[0], nacl_like.born[0][0, 0] * np.eye(3), atol=1e-6)
    # a record whose charges do not fit its cell is refused, naming it
    data = next(load for mid, load in petretto._json_members(Path(petretto_archive)) if mid == VAL_IDS[0])()
    data["dielectric"]["becs"] = data["dielectric"]["becs"][:1]
    with pytest.raises(ValueError, match=VAL_IDS[0]):
        dielectric_from_record(data, 4.0)
    del data["dielectric"]
    assert dielectric_from_record(data, 4.0) is None


@pytest.mark.parametrize("interactions", [0, 1])
def test_training_improves_and_checkpoint_round_trips(val_samples, backbone, tmp_path, interactions):
    train, val = val_samples[:7], val_samples[7:]
    irreps = str(backbone_irreps(backbone))
    cfg = BornTrainConfig(epochs=40, batch_size=4, lr=5e-3, heads={"mid_irreps": "8x0e + 4x1o + 4x2e",
                                                                     "square_irreps": "8x0e + 4x1e + 4x2e",
                                                                     "interactions": interactions})
    torch.manual_seed(cfg.seed)
    untrained = predict_heads(BornHeads(irreps, **cfg.heads), train)  # what training starts from
    # selected on the training materials themselves: this checks that the heads fit
    heads, best = train_heads(train, train, irreps, cfg, checkpoint=tmp_path / "h.pt", log=lambda _: None)
    before = dielectric_metrics(train, untrained)["born_mae"]
    after = dielectric_metrics(train, predict_heads(heads, train))["born_mae"]
    assert after < 0.7 * before
    assert 1 <= best["epoch"] <= 40 and (tmp_path / "h.pt").is_file()
    save_heads(heads, tmp_path / "final.pt", {"note": "test"})
    loaded, meta = load_heads(tmp_path / "final.pt")
    assert meta == {"note": "test"} and len(loaded.convolutions) == interactions
    for a, b in zip(predict_heads(heads, val), predict_heads(loaded, val)):
        np.testing.assert_allclose(a.born, b.born, atol=1e-6)
        np.testing.assert_allclose(a.epsilon, b.epsilon, atol=1e-6)


def test_fine_tuned_backbones_learn_and_ship_with_the_heads(val_samples, backbone, tmp_path, monkeypatch):
    import copy

    from vgnn_core.crystal.graph import collate
    from vgnn_core.nn.born import BornBackbones, BornModel, backbone_features
    from vgnn_core.predict import Predictor

    samples = [copy.copy(s) for s in val_samples]  # features are re-attached: leave the module's alone
    train, val = samples[:6], samples[6:]
    own = BornBackbones.copy_of(backbone)
    batch = collate([s.graph for s in train])
    with torch.no_grad():  # a copy gives the k-MVN's own features
        np.testing.assert_allclose(backbone_features(own, batch), backbone_features(backbone, batch), atol=1e-6)
    start = {k: v.clone() for k, v in own.state_dict().items()}
    irreps = str(backbone_irreps(backbone))
    cfg = BornTrainConfig(epochs=12, batch_size=3, lr=5e-3, backbone_lr=2e-3,
                          heads={"mid_irreps": "8x0e + 4x1o + 4x2e", "square_irreps": "8x0e + 4x1e + 4x2e"})
    torch.manual_seed(cfg.seed)
    before = dielectric_metrics(train, predict_heads(BornHeads(irreps, **cfg.heads), train))["born_mae"]
    heads, best = train_heads(train, val, irreps, cfg, checkpoint=tmp_path / "h.pt", log=lambda _: None,
                              backbones=own)
    moved = max(float((own.state_dict()[k] - v).abs().max()) for k, v in start.items() if v.numel())
    assert moved > 1e-4  # the backbones were trained, not only the heads
    # the best epoch's backbones are restored and saved with the heads; val's features fit them
    saved = load_backbones(tmp_path / "h.pt")
    for k, v in own.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[k], v.float())
    score = dielectric_metrics(val, predict_heads(heads, val))
    assert score["born_mae"] == pytest.approx(best["val_born_mae"], rel=1e-5)
    attach_features(own, train)
    expected = predict_heads(heads, train)
    assert dielectric_metrics(train, expected)["born_mae"] < 0.7 * before
    # as a BornModel they need no k-MVN, run their own pass and take a float64 batch
    loaded = BornModel(saved, load_heads(tmp_path / "h.pt")[0])
    for a, b in zip(expected, loaded.predict(collate([s.graph for s in train], dtype=torch.float64))):
        np.testing.assert_allclose(b.born, a.born, atol=1e-4)
        np.testing.assert_allclose(b.epsilon, a.epsilon, rtol=1e-4)
        np.testing.assert_allclose(b.born.sum(axis=0), 0, atol=1e-5)
    # a predictor with them gives those charges in its NAC results (its own graphs, cut at 6 Å)
    predictor = Predictor(load_pretrained_model("kmvn"), born_model=loaded)
    (result,) = predictor.predict_phonons([train[0].structure], bands=False, thermal=False, nac=True)
    assert result.has_nac
    np.testing.assert_allclose(result.born_charges, expected[0].born, atol=1e-4)
    # shipped like that, the registry builds the Born model on its own backbones, not on a k-MVN's
    from vgnn_core.pretrained import registry

    monkeypatch.setattr(registry, "shipped_file", lambda name: tmp_path / "h.pt")
    shipped = registry.load_born_model()
    assert isinstance(shipped.model, BornBackbones) and shipped.member_positions(backbone) is None
    # a release's new heads, not yet shipped, load the same way from their own file
    monkeypatch.setattr(registry, "shipped_file", lambda name: tmp_path / "missing.pt")
    unshipped = registry.load_born_model(heads_file=tmp_path / "h.pt")
    batch = collate([x.graph for x in train[:2]], dtype=torch.float64)
    for a, b in zip(shipped.predict(batch), unshipped.predict(batch)):
        np.testing.assert_allclose(b.born, a.born, atol=1e-6)
    monkeypatch.setattr(registry, "shipped_file", lambda name: tmp_path / "h.pt")
    from vgnn_core.nn import make_model

    with pytest.raises(ValueError, match="stop at 3.0 Å"):  # a model whose graphs are too short for them
        registry.load_born_model(make_model(kind="kmvn", r_max=3.0))
    # heads on frozen backbones carry none
    save_heads(heads, tmp_path / "frozen.pt")
    assert load_backbones(tmp_path / "frozen.pt") is None


def test_recipe_leaves_failed_records_out_of_the_fit_only(petretto_archive, tmp_path):
    import json

    split = petretto.load_split(Path(petretto_archive).parent / "split.json")
    assert "mp-22261" in split["train"]  # InCuTe2: ε∞ ≈ 4.4e6
    small = {"train": ["mp-22261", *[m for m in split["train"] if m != "mp-22261"][:4]], "val": VAL_IDS[:3],
             "test": split["test"][:2], "reference_test_subset": split["test"][:2]}
    (tmp_path / "split.json").write_text(json.dumps(small))
    heads = {"mid_irreps": "8x0e + 4x1o + 4x2e", "square_irreps": "8x0e + 4x1e + 4x2e"}
    for physical_only, fitted in ((True, 4), (False, 5)):
        out = tmp_path / str(physical_only)
        metrics = run(out, cfg=BornTrainConfig(epochs=1, batch_size=4, heads=heads, physical_only=physical_only),
                      split_file=tmp_path / "split.json", log=lambda _: None)
        meta = json.loads((out / "metrics.json").read_text())
        assert meta["n_train"] == fitted and metrics["train"]["heads"]["n"] == fitted
        assert meta["left_out_of_training"] == (["mp-22261"] if physical_only else [])
        assert metrics["val"]["heads"]["n"] == 3 and metrics["test"]["heads"]["n"] == 2  # scored as they come
        assert meta["train_config"]["physical_only"] is physical_only
    # the two fits read the same members: averaged, scored the same way
    metrics = average(tmp_path / "avg", [tmp_path / "True" / "born_heads.pt", tmp_path / "False" / "born_heads.pt"],
                      split_file=tmp_path / "split.json", log=lambda _: None)
    averaged, meta = load_heads(tmp_path / "avg" / "born_heads.pt")
    assert len(averaged.members) == 2 and len(meta["averaged"]) == 2
    assert metrics["val"]["heads"]["n"] == 3 and meta["best"]["val_born_mae"] == metrics["val"]["heads"]["born_mae"]
    assert [a["left_out_of_training"] for a in meta["averaged"]] == [["mp-22261"], []]  # where each came from
    with pytest.raises(ValueError, match="averaged heads cannot start a fit"):
        run(tmp_path / "again", cfg=BornTrainConfig(epochs=1, heads=heads), split_file=tmp_path / "split.json",
            init_heads=tmp_path / "avg" / "born_heads.pt", log=lambda _: None)


def test_failed_dfpt_records_are_left_out_of_training(val_samples):
    import dataclasses

    # mp-22261 (InCuTe2) in Petretto train has ε∞ ≈ 4e6 and |Z*| ≈ 900: a gapless DFPT result
    metal_like = dataclasses.replace(val_samples[0], material_id="gapless", epsilon=4.4e6 * np.eye(3))
    huge_charge = dataclasses.replace(val_samples[1], material_id="huge-z", born=val_samples[1].born * 100)
    messages = []
    kept = physical_targets([metal_like, *val_samples, huge_charge], log=messages.append)
    assert [s.material_id for s in kept] == VAL_IDS  # every real val material is an insulator's
    assert len(messages) == 2 and messages[0].startswith("gapless:") and messages[1].startswith("huge-z:")


def test_togo_born_files_give_primitive_cell_charges():
    root = shared_data_dir()
    if root is None or not (root / TOGO_BORN_RELATIVE).is_file():
        pytest.skip("Togo phonondb BORN pack not available")
    # mp-1000 (BaTe, rock salt; BORN: ε∞ 6.9929, Z* ∓2.7872 for Te / Ba), mp-10070 has no BORN file
    samples = load_togo_born(["mp-1000", "mp-10070"], log=lambda _: None)
    assert [s.material_id for s in samples] == ["mp-1000"]
    bate = samples[0]
    assert len(bate.structure) == 2 and bate.structure.composition.reduced_formula == "BaTe"  # primitive cell
    np.testing.assert_allclose(bate.epsilon, 6.99290513 * np.eye(3), atol=1e-8)
    signs = {site.specie.symbol: bate.born[k] for k, site in enumerate(bate.structure)}
    np.testing.assert_allclose(signs["Ba"], 2.78724826 * np.eye(3), atol=1e-6)
    np.testing.assert_allclose(signs["Te"], -2.78724826 * np.eye(3), atol=1e-6)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no trained Born heads shipped")
def test_shipped_heads_beat_the_element_baseline(val_samples):
    heads, meta = load_heads(SHIPPED)
    assert SHIPPED.stat().st_size < 3_000_000  # a few MB at most: committed with the code
    baseline = ElementBaseline.from_dict(meta["baseline"])
    ours = dielectric_metrics(val_samples, predict_heads(heads, val_samples))
    base = dielectric_metrics(val_samples, [baseline.predict(s) for s in val_samples])
    assert ours["born_mae"] < base["born_mae"]
    assert ours["eps_rel_median"] < base["eps_rel_median"]
    # the predictions are physical inputs for the LO–TO correction
    for s, p in zip(val_samples, predict_heads(heads, val_samples)):
        np.testing.assert_allclose(p.born.sum(axis=0), 0, atol=1e-5)
        NonAnalyticCorrection.from_born(s.structure, p)  # ε∞ positive definite, shapes right
    assert torch.get_default_dtype() == torch.float32
