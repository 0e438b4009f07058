"""The chemistry data layer: the SA oracle against RDKit's shipped reference values, the
shipped SMILES sets, graphs, fingerprints, the tokenizer and the generation metrics."""

import importlib.util
import math
import sys

import pytest
import torch

pytest.importorskip("rdkit", reason="needs the molecules extra")

from spikegrad.data import molecules as M  # noqa: E402


def test_sascorer_reproduces_rdkits_100_reference_values():
    ref = M.load_sa_reference()
    assert len(ref) == 100
    diff = [abs(M.sa_score(smi) - value) for smi, value in ref]
    assert max(diff) <= 1e-3


def test_sa_score_of_invalid_smiles_is_none_and_bad_types_raise():
    assert M.sa_score("C1CC") is None and M.sa_score("") is None
    assert M.sa_scores(["CCO", "((("]) [1] is None
    with pytest.raises(TypeError, match="SMILES string"):
        M.sa_score(3)


def test_nci_set_parses_4991_with_the_published_mean():
    nci = M.load_nci_smiles()
    assert len(nci) == 4991
    first = M.sa_scores(nci[:200])
    assert 2.0 < sum(first) / len(first) < 3.2
    assert M.load_nci_smiles(limit=7) == nci[:7]


def test_moses_csv_is_read_without_importing_moses():
    if importlib.util.find_spec("moses") is None:
        pytest.skip("needs molsets (pip install --no-deps molsets)")
    smiles = M.load_moses_smiles(limit=50)
    assert len(smiles) == 50 and "moses" not in sys.modules
    assert all(M.canonical(s) is not None for s in smiles)
    with pytest.raises(ValueError, match="split"):
        M.load_moses_smiles(split="valid")


def test_graph_has_both_bond_directions_and_the_documented_widths():
    g = M.mol_graph("c1ccccc1O")
    assert g.x.shape == (7, M.ATOM_FEATURES)
    assert g.edge_index.shape == (2, 14) and g.edge_attr.shape == (14, M.BOND_FEATURES)
    assert set(map(tuple, g.edge_index.T.tolist())) == {(v, u) for u, v in g.edge_index.T.tolist()}
    single = M.mol_graph("C")
    assert single.edge_index.shape == (2, 0)
    with pytest.raises(ValueError, match="cannot parse"):
        M.mol_graph("C1CC")


def test_morgan_counts_are_log1p_counts():
    fp = M.morgan_counts(["CCCC", "CCCC", "c1ccccc1"])
    assert fp.shape == (3, 2048) and torch.equal(fp[0], fp[1])
    # benzene: one environment per radius for 6 equivalent atoms -> log(1 + 6)
    assert math.isclose(fp[2].max().item(), math.log(7), rel_tol=1e-6)
    with pytest.raises(ValueError, match="SMILES 1"):
        M.morgan_counts(["C", "C1C"])


def test_tokenizer_round_trips_and_vocab_encodes():
    smi = "Cc1ccc(Cl)c([nH+])c1Br%10"
    toks = M.tokenize(smi)
    assert "".join(toks) == smi and "[nH+]" in toks and "Cl" in toks and "%10" in toks
    vocab = M.SmilesVocab.build(["CCO", "c1ccccc1Cl"])
    ids = vocab.encode(["CCO", "Clc1ccccc1"], max_len=12)
    assert ids.shape == (2, 14) and ids[0, 0] == vocab.BOS
    assert vocab.decode(ids[1, 1:]) == "Clc1ccccc1"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.encode(["CBr"], max_len=5)
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode(["CCCCCC"], max_len=3)


def test_generation_metrics():
    samples = ["CCO", "OCC", "C1CC", "c1ccccc1"]
    assert M.validity(samples) == 0.75
    assert math.isclose(M.uniqueness(samples), 2 / 3)
    assert M.novelty(samples, [M.canonical("CCO")]) == 0.5
    assert math.isnan(M.uniqueness(["C1CC"]))
    assert M.internal_diversity(["CCO", "CCO"]) == 0.0
    assert 0.5 < M.internal_diversity(["CCO", "c1ccccc1", "CCCCCCCC"]) < 1.0
    with pytest.raises(ValueError, match="no SMILES"):
        M.validity([])


def test_missing_rdkit_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r"spikegrad\[molecules\]"):
        M.require_rdkit()


def test_selfies_vocab_round_trips_and_every_token_sequence_is_a_molecule():
    pytest.importorskip("selfies", reason="needs the molecules extra")
    smiles = ["CCO", "c1ccccc1N", "CC(=O)Nc1ccc(Cl)cc1", "O=C1CCCN1"]
    vocab = M.SelfiesVocab.build(smiles)
    assert all(t.startswith("[") and t.endswith("]") for t in vocab.itos[3:])
    ids = vocab.encode(smiles, 40)
    assert [M.canonical(vocab.decode(row[1:])) for row in ids] == [M.canonical(s) for s in smiles]
    # any sequence of its tokens that holds an atom decodes to a molecule RDKit parses
    # (SELFIES's guarantee); ring and branch tokens alone decode to the empty SMILES
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        row = torch.randint(3, len(vocab), (int(torch.randint(1, 30, (1,), generator=g)),),
                            generator=g)
        row = torch.cat([torch.tensor([vocab.stoi["[C]"]]), row])
        assert M.canonical(vocab.decode(row)) is not None
    assert vocab.decode([M.SelfiesVocab.EOS]) == "" and M.canonical("") is None
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode(["CC(=O)Nc1ccc(Cl)cc1"], 3)


def test_missing_selfies_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "selfies", None)
    with pytest.raises(ImportError, match=r"spikegrad\[molecules\]"):
        M.SelfiesVocab.tokens("CCO")
