import math

import pytest

from vgnn_core.phonons import units


def test_thz_cm1_mev_roundtrip():
    assert units.thz_to_cm1(1.0) == pytest.approx(33.35641, rel=1e-6)
    assert units.thz_to_mev(1.0) == pytest.approx(4.135667, rel=1e-6)
    assert units.cm1_to_mev(8.065544) == pytest.approx(1.0, rel=1e-6)
    assert units.mev_to_thz(units.thz_to_mev(2.5)) == pytest.approx(2.5)
    assert units.cm1_to_thz(units.thz_to_cm1(7.0)) == pytest.approx(7.0)


def test_force_constant_unit_matches_phonopy():
    from phonopy.physical_units import get_physical_units

    # √(eV/Å²/amu)/2π in THz — phonopy's VASP factor (older CODATA: agree to 2e-7).
    assert units.EV_ANGSTROM2_AMU_TO_THZ == pytest.approx(get_physical_units().DefaultToTHz, rel=2e-7)
    assert units.EV_ANGSTROM2_AMU_TO_CM1 == pytest.approx(
        units.EV_ANGSTROM2_AMU_TO_THZ * units.THZ_TO_CM1
    )


def test_harmonic_oscillator_frequency():
    # A mass of 1 amu on a 1 eV/Å² spring: ω = √(k/M) = 9.82269e13 rad/s → 15.633 THz
    nu_thz = math.sqrt(1.0) * units.EV_ANGSTROM2_AMU_TO_THZ
    assert nu_thz == pytest.approx(15.6333, rel=1e-5)
