"""Shared fixtures: crystals built in code, and the shared data folder when present."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from vgnn_core.settings import shared_data_dir

#: A tiny network (one layer, a few channels) for tests that need a model, not a good one.
TINY_ARCH = dict(n_layers=1, hidden_irreps="8x0e + 4x1o + 2x2e", readout_irreps="4x0e + 2x2e", embed_dim=8, radial_hidden=8)


def _data_dir_or_skip(sub: str):
    root = shared_data_dir()
    path = None if root is None else root / sub
    if path is None or not path.exists():
        msg = f"shared data '{sub}' not found (set VGNN_DATA_DIR to the folder holding it)"
        if os.environ.get("CI"):
            pytest.fail(msg + " — CI must have ../shared/data")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def phonopy_examples_dir():
    return _data_dir_or_skip("phonopy_examples")


@pytest.fixture(scope="session")
def petretto_archive():
    return _data_dir_or_skip("petretto2018/phonon_json.tar.gz")


@pytest.fixture
def si_conventional() -> Structure:
    a = 5.43
    coords = [
        [0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
        [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25],
    ]
    return Structure(Lattice.cubic(a), ["Si"] * 8, coords)


@pytest.fixture
def si_primitive() -> Structure:
    a = 5.43
    lattice = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


@pytest.fixture
def wurtzite_zno() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
    )


@pytest.fixture
def monoclinic_zro2() -> Structure:
    # baddeleyite-like ZrO2, P2_1/c
    return Structure.from_spacegroup(
        14,
        Lattice.monoclinic(5.15, 5.21, 5.31, 99.2),
        ["Zr", "O", "O"],
        [[0.2758, 0.0411, 0.2082], [0.0703, 0.3359, 0.3406], [0.4423, 0.7549, 0.4789]],
    )


@pytest.fixture(scope="session")
def _rocksalt_nacl_cell() -> Structure:
    """Built once: pymatgen's Fm-3m (192 operations) takes about a second to build."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


@pytest.fixture
def rocksalt_nacl(_rocksalt_nacl_cell) -> Structure:
    return copy.deepcopy(_rocksalt_nacl_cell)  # each test its own (Structure.copy would share the lattice)


@pytest.fixture
def perovskite_srtio3() -> Structure:
    return Structure(
        Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]],
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    np.random.seed(1234)


@pytest.fixture(scope="session")
def phonondb_force_sets():
    return _data_dir_or_skip("togo_phonondb/force_sets.tar.xz")
