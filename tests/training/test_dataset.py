"""The Petretto DFPT archive reader and the fixed split."""

import numpy as np
import pytest

from vgnn_core.training.petretto import iter_petretto, load_split, parse_record


def test_split_is_fixed_and_disjoint(petretto_archive):
    split = load_split(petretto_archive.parent / "split.json")
    assert {k: len(v) for k, v in split.items()} == {
        "train": 1229, "val": 136, "test": 156, "reference_test_subset": 66,
    }
    train, val, test = map(set, (split["train"], split["val"], split["test"]))
    assert not (train & val or train & test or val & test)
    assert set(split["reference_test_subset"]) <= test


def test_records_are_consistent(petretto_archive):
    records = list(iter_petretto(petretto_archive, limit=25))
    assert len(records) == 25
    for r in records:
        m = len(r.structure)
        assert r.bands.shape == (len(r.qpoints), 3 * m)
        assert np.all(np.diff(r.bands, axis=1) >= -1e-6)  # sorted per q
        assert r.structure.properties["material_id"] == r.material_id
        if r.gamma_index is not None:
            # DFPT acoustic modes at Γ are small (residual sum-rule breaking only)
            assert np.sort(np.abs(r.bands[r.gamma_index]))[:3].max() < 60


def test_selected_ids(petretto_archive):
    ids = load_split(petretto_archive.parent / "split.json")["reference_test_subset"][:3]
    got = [r.material_id for r in iter_petretto(petretto_archive, ids=ids)]
    assert sorted(got) == sorted(ids)


def test_parse_record_minimal():
    cif = """data_x
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Po Po1 0 0 0
"""
    rec = parse_record({
        "metadata": {"material_id": "mp-x", "structure": cif},
        "phonon": {"qpts": [[0.5, 0, 0], [0, 0, 0]], "ph_bandstructure": [[1, 2, 3], [0, 0, 0]]},
        "thermo": {},
    })
    assert rec.gamma_index == 1 and rec.bands.shape == (2, 3)
    with pytest.raises(KeyError):
        parse_record({"metadata": {}})


def test_folder_of_json_files(tmp_path, petretto_archive):
    import json
    import tarfile

    with tarfile.open(petretto_archive) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                (tmp_path / member.name.split("/")[-1]).write_bytes(tar.extractfile(member).read())
                break
    (rec,) = list(iter_petretto(tmp_path))
    assert rec.material_id == json.loads(next(tmp_path.glob("*.json")).read_text())["metadata"]["material_id"]


def test_sample_cache_is_plain_arrays(petretto_archive, tmp_path, monkeypatch):
    import json
    import tarfile

    from vgnn_core.training.petretto import load_samples

    folder = tmp_path / "json"
    folder.mkdir()
    with tarfile.open(petretto_archive) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                (folder / member.name.split("/")[-1]).write_bytes(tar.extractfile(member).read())
                if len(list(folder.iterdir())) == 3:
                    break
    monkeypatch.setenv("VGNN_CACHE_DIR", str(tmp_path / "cache"))
    # a planted pickle in the cache folder is never read: the cache is .npz, loaded without pickle
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "petretto_samples_0000.pkl").write_bytes(b"cos\nsystem\n(S'false'\ntR.")
    first = load_samples(archive=folder, r_max=4.0)
    (cache,) = (tmp_path / "cache").glob("*.npz")
    with np.load(cache, allow_pickle=False) as z:
        assert len(z.files) > 3
    again = load_samples(archive=folder, r_max=4.0)
    assert [s.material_id for s in again] == [s.material_id for s in first]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.bands, b.bands)
        np.testing.assert_array_equal(a.graph.edge_vec, b.graph.edge_vec)
        assert (a.gamma is None) == (b.gamma is None) and a.cv_300k == b.cv_300k
    assert json.loads((folder / f"{first[0].material_id}.json").read_text())["metadata"]["material_id"] == first[0].material_id
