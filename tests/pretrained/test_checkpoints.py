import numpy as np
import pytest
import torch

import vgnn_core
from vgnn_core import ChecksumError, PretrainedNotAvailableError, load_checkpoint, save_checkpoint


def test_roundtrip_same_predictions(tmp_path, wurtzite_zno):
    model = vgnn_core.VGNN(kind="kmvn", n_layers=2)
    path = tmp_path / "m.pt"
    digest = save_checkpoint(model, path, metadata={"note": "random"})
    loaded = load_checkpoint(path, sha256=digest)
    assert loaded.config == model.config and loaded.checkpoint_metadata == {"note": "random"}
    a = vgnn_core.Predictor(model).predict_gamma([wurtzite_zno])[0]
    b = vgnn_core.Predictor(loaded).predict_gamma([wurtzite_zno])[0]
    np.testing.assert_array_equal(a, b)
    # plain tensors only: loads with weights_only=True
    torch.load(path, weights_only=True)


def test_checksum_mismatch_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(vgnn_core.VGNN(kind="mvn", n_layers=1), path)
    with pytest.raises(ChecksumError, match="does not match"):
        load_checkpoint(path, sha256="0" * 64)


def test_load_pretrained_says_when_nothing_ships(monkeypatch):
    from vgnn_core.pretrained import registry

    shipped = registry.shipped_checkpoints()
    assert {"kmvn", "mvn"} <= set(shipped)  # the defaults ship
    monkeypatch.setattr(registry, "shipped_checkpoints", lambda: {"kmvn": shipped["kmvn"]})
    assert vgnn_core.load_pretrained("kmvn").kind == "kmvn"
    for name in ("mvn", "vvn"):
        with pytest.raises(PretrainedNotAvailableError, match=f"no trained '{name}' checkpoint"):
            vgnn_core.load_pretrained(name)
    with pytest.raises(ValueError, match="unknown pretrained model"):
        vgnn_core.load_pretrained("gnome")
