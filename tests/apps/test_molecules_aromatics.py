"""The small aromatics arm A's token proxy is labelled on: the substitution patterns the
enumeration claims, the distinct seeded draw, and the filter to what a generator can write."""

import pytest

pytest.importorskip("rdkit", reason="needs the molecules extra")

from spikegrad.apps.molecules import aromatics  # noqa: E402
from spikegrad.apps.molecules.run import _writable  # noqa: E402
from spikegrad.data import molecules as chem  # noqa: E402


def test_phenyl_substituents_sit_ortho_meta_and_para_to_the_link():
    heads = aromatics.substituted_phenyls("9", 5, ("C",))
    tails = aromatics.substituted_phenyls("8", 0, ("C",))
    assert len(heads) == len(tails) == 4          # unsubstituted, ortho, meta, para
    # a methyl on each ring, joined by a bond: the dimethylbiphenyl of each pair of positions
    want = {"o": "Cc1ccccc1-c1ccccc1", "m": "Cc1cccc(-c2ccccc2)c1",
            "p": "Cc1ccc(-c2ccccc2)cc1"}
    for head, tail, where in zip(heads[1:], tails[1:], "omp"):
        assert chem.canonical(head + tails[0]) == chem.canonical(want[where])
        assert chem.canonical(heads[0] + tail) == chem.canonical(want[where])
    # para on both rings, linked by CH2: 4,4'-dimethyldiphenylmethane
    assert chem.canonical(heads[3] + "C" + tails[3]) == chem.canonical(
        "Cc1ccc(Cc2ccc(C)cc2)cc1")
    with pytest.raises(ValueError, match="attach"):
        aromatics.substituted_phenyls("9", 2)


def test_linked_and_substituted_benzenes_cover_the_named_families():
    linked = {chem.canonical(s) for s in aromatics.linked_benzenes(("C", "Cl"), ("", "O"))}
    assert len(linked) == len(set(linked) - {None})
    for name in ("c1ccc(-c2ccccc2)cc1", "c1ccc(Oc2ccccc2)cc1", "Clc1ccc(-c2ccc(Cl)cc2)cc1"):
        assert chem.canonical(name) in linked
    benzenes = {chem.canonical(s) for s in aromatics.substituted_benzenes(("C",), most=3)}
    # benzene, toluene, 3 xylenes, 3 trimethylbenzenes
    assert len(benzenes) == 8


def test_easy_molecules_are_distinct_canonical_and_seeded():
    a = aromatics.easy_molecules(40, seed=0)
    assert len(a) == len(set(a)) == 40
    assert all(chem.canonical(s) == s for s in a)
    assert a == aromatics.easy_molecules(40, seed=0)
    assert a != aromatics.easy_molecules(40, seed=1)
    assert aromatics.easy_molecules(0, seed=0) == []
    with pytest.raises(ValueError, match="n must be"):
        aromatics.easy_molecules(-1, seed=0)


def test_writable_keeps_only_what_the_vocabulary_and_max_len_allow():
    vocab = chem.SmilesVocab.build(["c1ccccc1C", "CCO"])
    kept = _writable(["Cc1ccccc1", "c1ccccc1Cl", "CCCCCCCCCCCC", "OCC"], vocab, max_len=10)
    # Cl is not a token of the vocabulary; 12 carbons exceed max_len
    assert kept == ["Cc1ccccc1", "OCC"]


def test_the_census_counts_distinct_valid_molecules_at_each_threshold():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "scripts" / "molecules_sa_census.py"
    spec = importlib.util.spec_from_file_location("molecules_sa_census", path)
    census = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(census)
    # benzene twice (two spellings), toluene (both SA 1), ethanol, and a string that does
    # not parse
    smiles = ["c1ccccc1", "C1=CC=CC=C1", "Cc1ccccc1", "CCO", "C1CC"]
    ethanol = chem.sa_score("CCO")
    assert ethanol > 1.2
    line = census.census("toy", smiles, k=2)
    assert line == ("toy: 3 distinct valid; best 2 mean SA 1.000; <= 1: 2, <= 1.07: 2, "
                    "<= 1.1: 2, <= 1.2: 2")
    assert "best 4 mean SA n/a" in census.census("toy", smiles, k=4)
