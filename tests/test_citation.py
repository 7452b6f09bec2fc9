"""LICENSE and CITATION.cff: the licence pyproject declares, and a citation file that parses and
cites the method, the training data and phonopy."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_license() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]+)"', text, flags=re.M).group(1)


def test_license_is_the_one_pyproject_declares():
    text = (ROOT / "LICENSE").read_text()
    assert _pyproject_license() == "MIT"
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The VGNN phonon database developers" in text


def test_citation_cff_cites_the_software_and_its_sources():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software" and cff["license"] == _pyproject_license()
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert cff["version"] == version
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])
    refs = {r.get("doi"): r for r in cff["references"]}
    okabe = refs["10.1038/s43588-024-00661-0"]
    assert okabe["authors"][0]["family-names"] == "Okabe" and okabe["journal"] == "Nature Computational Science"
    assert (okabe["volume"], okabe["start"], okabe["end"], okabe["year"]) == (4, 522, 531, 2024)
    petretto = refs["10.1038/sdata.2018.65"]
    assert (petretto["authors"][0]["family-names"], petretto["volume"], petretto["start"]) == ("Petretto", 5, 180065)
    togo = refs["10.7566/JPSJ.92.012001"]
    assert (togo["volume"], str(togo["start"]), togo["year"]) == (92, "012001", 2023)
    assert any("phonondb" in r["title"] and r["authors"][0]["family-names"] == "Togo" for r in cff["references"])
    for r in cff["references"]:
        assert r["type"] in {"article", "database"} and r["title"] and r["authors"], r.get("title")
