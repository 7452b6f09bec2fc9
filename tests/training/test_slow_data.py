"""Data-heavy checks over whole datasets (``make check-full``)."""

import numpy as np
import pytest

from vgnn_core import build_graph, high_symmetry_path, read_structure
from vgnn_core.settings import shared_data_dir
from vgnn_core.training.petretto import iter_petretto

pytestmark = pytest.mark.slow


def test_every_petretto_structure_gets_a_graph_and_a_path(petretto_archive):
    n = 0
    for record in iter_petretto(petretto_archive):
        g = build_graph(record.structure)
        assert g.n_edges > 0, record.material_id
        path = high_symmetry_path(record.structure)
        assert path.n_qpoints > 10 and np.isfinite(path.qpoints).all(), record.material_id
        n += 1
    assert n == 1521


def test_every_zeolite_is_read_and_graphed():
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data not found")
    cifs = sorted((root / "iza_zeolites" / "cifs").glob("*.cif"))
    assert len(cifs) == 253
    for cif in cifs:
        s = read_structure(cif)
        g = build_graph(s)
        # every T atom has 4 O neighbours well inside 4 Å, so no atom is isolated
        assert np.bincount(g.edge_src, minlength=len(s)).min() > 0, cif.name
