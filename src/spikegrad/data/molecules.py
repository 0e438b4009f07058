"""Molecules offline: the synthetic-accessibility oracle, shipped SMILES sets, graphs,
fingerprints, a SMILES tokenizer and the usual generation metrics.

Everything chemical comes from RDKit, imported when first needed (the ``molecules`` extra:
``pip install 'spikegrad[molecules]'``); this module imports without it.

* **Oracle**: Ertl & Schuffenhauer's SA score (J. Cheminform. 2009, 1:8), RDKit's
  ``Contrib/SA_Score/sascorer.py`` as shipped in the rdkit wheel, loaded from its file (it is
  not an importable package). 1 is easy to make, 10 hard. It is a sum of fragment look-ups and
  ring/stereo/size penalties: no derivative.
* **Data**: RDKit's ``Data/NCI/first_5K.smi`` (4991 parse) and the MOSES training SMILES
  (1.58 M, ``moses/dataset/data/train.csv.gz`` in the ``molsets`` wheel, installed with
  ``pip install --no-deps molsets``: the file is read directly, ``moses`` is never imported,
  because its import needs packages that do not install here). Nothing is downloaded.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import re
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["require_rdkit", "sascorer", "sa_score", "sa_scores", "canonical",
           "load_nci_smiles", "load_moses_smiles", "load_sa_reference", "MolGraph",
           "mol_graph", "ATOM_FEATURES", "BOND_FEATURES", "morgan_counts", "tokenize",
           "SmilesVocab", "SelfiesVocab", "require_selfies", "validity", "uniqueness",
           "novelty", "internal_diversity"]

EXTRA = "pip install 'spikegrad[molecules]'"
MOLSETS = "pip install --no-deps molsets==0.3.1"


def require_rdkit():
    """The ``rdkit.Chem`` module, or an ImportError that names the extra to install."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:
        raise ImportError(f"spikegrad's molecule tools need RDKit: {EXTRA} ({e})") from None
    # invalid generated SMILES are expected and counted; RDKit would print each to stderr
    RDLogger.DisableLog("rdApp.*")
    return Chem


def _contrib(*parts: str) -> Path:
    require_rdkit()
    from rdkit import RDConfig
    return Path(RDConfig.RDContribDir, *parts)


@functools.lru_cache(maxsize=None)
def sascorer():
    """RDKit's ``sascorer`` module, loaded from the rdkit wheel's ``Contrib/SA_Score``."""
    path = _contrib("SA_Score", "sascorer.py")
    if not path.is_file():
        raise ImportError(f"RDKit has no Contrib/SA_Score/sascorer.py at {path}; install the "
                          f"rdkit wheel that ships it: {EXTRA}")
    spec = importlib.util.spec_from_file_location("spikegrad_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.readFragmentScores()   # once, here, rather than inside the first timed call
    return module


def _mol(smiles):
    Chem = require_rdkit()
    if not isinstance(smiles, str):
        raise TypeError(f"expected a SMILES string, got {type(smiles).__name__}")
    return Chem.MolFromSmiles(smiles) if smiles else None


def sa_score(smiles: str) -> Optional[float]:
    """The SA score of one SMILES (1 easy .. 10 hard), or ``None`` if RDKit cannot parse it.

    Example:
        >>> round(sa_score("CCO"), 3)   # doctest: +SKIP
        1.981
    """
    mol = _mol(smiles)
    return None if mol is None else float(sascorer().calculateScore(mol))


def sa_scores(smiles: Iterable[str]) -> List[Optional[float]]:
    """:func:`sa_score` of each SMILES (``None`` for the unparsable)."""
    return [sa_score(s) for s in smiles]


def canonical(smiles: str) -> Optional[str]:
    """RDKit's canonical SMILES, or ``None`` if it does not parse (the empty string included)."""
    mol = _mol(smiles)
    return None if mol is None else require_rdkit().MolToSmiles(mol)


def load_nci_smiles(limit: Optional[int] = None) -> List[str]:
    """The canonical SMILES of RDKit's ``Data/NCI/first_5K.smi`` that parse (4991), in file
    order; the first ``limit`` of them when given."""
    require_rdkit()
    from rdkit import RDConfig
    path = Path(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    if not path.is_file():
        raise FileNotFoundError(f"RDKit's NCI set is missing at {path}; reinstall rdkit "
                                f"({EXTRA})")
    out = []
    for line in path.read_text().splitlines():
        smi = canonical(line.split()[0]) if line.strip() else None
        if smi:
            out.append(smi)
            if limit is not None and len(out) >= limit:
                break
    return out


def load_moses_smiles(limit: Optional[int] = None, split: str = "train") -> List[str]:
    """SMILES of the MOSES ``train`` or ``test`` split in file order (the first ``limit``).

    Read from the ``molsets`` wheel's ``moses/dataset/data/<split>.csv.gz`` without importing
    ``moses``. MOSES SMILES are already canonical, neutral and filtered (MW 250-350, no
    charges, atoms C N S O F Cl Br H), so they are returned as written.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    spec = importlib.util.find_spec("moses")   # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the MOSES SMILES ship in the molsets wheel: {MOLSETS} (its "
                          "dependencies are not needed; spikegrad reads the CSV directly)")
    path = Path(list(spec.submodule_search_locations)[0], "dataset", "data", f"{split}.csv.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall molsets: {MOLSETS}")
    out = []
    with gzip.open(path, "rt") as f:
        header = f.readline().strip().split(",")
        if "SMILES" not in header:
            raise ValueError(f"{path}: expected a SMILES column, got header {header}")
        col = header.index("SMILES")
        for line in f:
            out.append(line.rstrip("\n").split(",")[col])
            if limit is not None and len(out) >= limit:
                break
    return out


def load_sa_reference() -> List[Tuple[str, float]]:
    """``(smiles, sa_score)`` for the 100 ZINC molecules of ``SA_Score/data/zim.100.txt``,
    the reference values RDKit's own SA_Score unit test checks to 3 decimals."""
    path = _contrib("SA_Score", "data", "zim.100.txt")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [(r[0], float(r[2])) for r in rows]


# ----------------------------------------------------------------------------- graphs

_ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se")
_HYBRID = ("SP", "SP2", "SP3", "SP3D", "SP3D2")
#: atom feature layout: element one-hot (+ other), degree 0..5, total H 0..4, formal charge
#: -1/0/+1, hybridisation, aromatic, in ring, ring sizes 3..8 and > 8 (SA's macrocycle
#: penalty), number of rings the atom is in 0..3+, chiral tag, bridgehead/spiro-like (in >= 2
#: rings)
ATOM_FEATURES = (len(_ELEMENTS) + 1) + 6 + 5 + 3 + len(_HYBRID) + 1 + 1 + 7 + 4 + 1 + 1
#: bond type (single, double, triple, aromatic), conjugated, in ring, stereo (E/Z) set
BOND_FEATURES = 4 + 1 + 1 + 1


class MolGraph(NamedTuple):
    """One molecule as a graph: ``x [N_atoms, ATOM_FEATURES]``, ``edge_index [2, E]``
    (both directions of every bond), ``edge_attr [E, BOND_FEATURES]``."""

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor


def _onehot(value, choices, other: bool = False) -> List[float]:
    v = [0.0] * (len(choices) + int(other))
    if value in choices:
        v[choices.index(value)] = 1.0
    elif other:
        v[-1] = 1.0
    return v


def mol_graph(smiles: str) -> MolGraph:
    """The heavy-atom graph of ``smiles`` with the features SA depends on (see
    ``ATOM_FEATURES``); ValueError if RDKit cannot parse it."""
    Chem = require_rdkit()
    mol = _mol(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"mol_graph: RDKit cannot parse {smiles!r} (or it has no atoms)")
    ring = mol.GetRingInfo()
    hyb = {getattr(Chem.HybridizationType, h): h for h in _HYBRID}
    feats = []
    for a in mol.GetAtoms():
        i = a.GetIdx()
        n_rings = ring.NumAtomRings(i)
        sizes = [float(ring.IsAtomInRingOfSize(i, s)) for s in range(3, 9)]
        big = float(n_rings > 0 and not any(sizes))
        feats.append(_onehot(a.GetSymbol(), _ELEMENTS, other=True)
                     + _onehot(min(a.GetDegree(), 5), list(range(6)))
                     + _onehot(min(a.GetTotalNumHs(), 4), list(range(5)))
                     + _onehot(a.GetFormalCharge(), [-1, 0, 1])
                     + _onehot(hyb.get(a.GetHybridization()), list(_HYBRID))
                     + [float(a.GetIsAromatic()), float(a.IsInRing())] + sizes + [big]
                     + _onehot(min(n_rings, 3), list(range(4)))
                     + [float(a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED),
                        float(n_rings >= 2)])
    bt = [Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE,
          Chem.BondType.AROMATIC]
    src, dst, attr = [], [], []
    for b in mol.GetBonds():
        e = (_onehot(b.GetBondType(), bt) + [float(b.GetIsConjugated()), float(b.IsInRing()),
                                             float(b.GetStereo() != Chem.BondStereo.STEREONONE)])
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        src += [u, v]
        dst += [v, u]
        attr += [e, e]
    return MolGraph(torch.tensor(feats, dtype=torch.float32),
                    torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                    torch.tensor(attr, dtype=torch.float32).reshape(-1, BOND_FEATURES))


def morgan_counts(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> Tensor:
    """``[N, n_bits]`` float32 ``log(1 + count)`` of hashed Morgan (ECFP-like) environments;
    ValueError naming the first SMILES RDKit cannot parse."""
    require_rdkit()
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.float32)
    for n, smi in enumerate(smiles):
        mol = _mol(smi)
        if mol is None:
            raise ValueError(f"morgan_counts: RDKit cannot parse SMILES {n}: {smi!r}")
        out[n] = np.log1p(gen.GetCountFingerprintAsNumPy(mol).astype(np.float32))
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- tokens

# bracket atoms, two-letter organic atoms, ring-bond numbers %nn, then single characters
_TOKEN = re.compile(r"(\[[^\]]+\]|Br|Cl|%\d{2}|.)")


def tokenize(smiles: str) -> List[str]:
    """SMILES -> tokens (``[nH]``, ``Cl``, ``%10`` stay whole); joining them gives it back."""
    if not isinstance(smiles, str):
        raise TypeError(f"tokenize: expected a SMILES string, got {type(smiles).__name__}")
    return _TOKEN.findall(smiles)


class SmilesVocab:
    """Token <-> id for SMILES, with ``<pad>`` (0), ``<bos>`` (1) and ``<eos>`` (2).

    Args:
        tokens: the vocabulary's tokens (without the three specials), in id order.
    """

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(self.SPECIALS) + list(tokens)
        self.stoi: Dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("SmilesVocab: tokens must be distinct and not a special")

    @staticmethod
    def tokens(smiles: str) -> List[str]:
        """The tokens one SMILES is written in (here: :func:`tokenize`)."""
        return tokenize(smiles)

    @classmethod
    def build(cls, smiles: Iterable[str]) -> "SmilesVocab":
        """The tokens of a corpus, sorted (so the same corpus gives the same ids)."""
        return cls(sorted({t for s in smiles for t in cls.tokens(s)}))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, smiles: Sequence[str], max_len: int) -> Tensor:
        """``[N, max_len + 2]`` long ids: ``<bos> tokens <eos> <pad>...``. ValueError for a
        token outside the vocabulary or a SMILES longer than ``max_len`` tokens."""
        out = torch.full((len(smiles), max_len + 2), self.PAD, dtype=torch.long)
        for n, smi in enumerate(smiles):
            toks = self.tokens(smi)
            if len(toks) > max_len:
                raise ValueError(f"SmilesVocab.encode: SMILES {n} has {len(toks)} tokens > "
                                 f"max_len={max_len}; raise max_len or filter it out")
            unknown = [t for t in toks if t not in self.stoi]
            if unknown:
                raise ValueError(f"SmilesVocab.encode: SMILES {n} ({smi!r}) has tokens "
                                 f"outside the vocabulary: {unknown}")
            ids = [self.BOS] + [self.stoi[t] for t in toks] + [self.EOS]
            out[n, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids) -> str:
        """Ids (without ``<bos>``) -> SMILES, stopping at the first ``<eos>`` or ``<pad>``."""
        return "".join(self._strings(ids))

    def _strings(self, ids) -> List[str]:
        out = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i in (self.EOS, self.PAD):
                break
            if i != self.BOS:
                out.append(self.itos[i])
        return out


def require_selfies():
    """The ``selfies`` module, or an ImportError that names the extra to install."""
    try:
        import selfies
    except ImportError as e:
        raise ImportError(f"SELFIES tokens need the selfies package: {EXTRA} ({e})") from None
    return selfies


class SelfiesVocab(SmilesVocab):
    """:class:`SmilesVocab` on SELFIES tokens (Krenn et al. 2020, ``[C]``, ``[Ring1]``,
    ``[=Branch1]``...): ``encode`` takes SMILES and writes them as SELFIES, ``decode`` returns
    the SMILES a token sequence decodes to. Every sequence of SELFIES tokens decodes to a
    molecule, so a generator on them cannot write an unparsable string; only the empty
    sequence (``<eos>`` first) decodes to the empty SMILES, which counts as invalid."""

    @staticmethod
    def tokens(smiles: str) -> List[str]:
        """The SELFIES tokens of one SMILES; ValueError if SELFIES cannot encode it."""
        sf = require_selfies()
        if not isinstance(smiles, str):
            raise TypeError(f"SelfiesVocab: expected a SMILES string, got "
                            f"{type(smiles).__name__}")
        try:
            return list(sf.split_selfies(sf.encoder(smiles)))
        except sf.EncoderError as e:
            raise ValueError(f"SelfiesVocab: SELFIES cannot encode {smiles!r} ({e})") from None

    def decode(self, ids) -> str:
        """Ids (without ``<bos>``) -> the SMILES their SELFIES tokens decode to."""
        sf = require_selfies()
        return sf.decoder("".join(self._strings(ids))) or ""


# ----------------------------------------------------------------------------- metrics

def validity(smiles: Sequence[str]) -> float:
    """Share of ``smiles`` that RDKit parses (the empty string counts as invalid)."""
    if not smiles:
        raise ValueError("validity: no SMILES given")
    return sum(canonical(s) is not None for s in smiles) / len(smiles)


def uniqueness(smiles: Sequence[str]) -> float:
    """Distinct canonical molecules among the valid ones, as a share of the valid (MOSES's
    definition); NaN when none is valid."""
    valid = [c for c in map(canonical, smiles) if c is not None]
    return len(set(valid)) / len(valid) if valid else math.nan


def novelty(smiles: Sequence[str], reference: Iterable[str]) -> float:
    """Share of the distinct valid molecules not in ``reference`` (canonical SMILES, e.g. the
    training set); NaN when none is valid."""
    valid = {c for c in map(canonical, smiles) if c is not None}
    if not valid:
        return math.nan
    ref = set(reference)
    return len(valid - ref) / len(valid)


def internal_diversity(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> float:
    """MOSES's IntDiv_1: ``1 - mean Tanimoto similarity`` over all pairs (self-pairs
    included, as MOSES does) of the valid molecules' Morgan bit fingerprints; NaN when
    none is valid."""
    require_rdkit()
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    fps = [gen.GetFingerprint(m) for m in (_mol(s) for s in smiles) if m is not None]
    if not fps:
        return math.nan
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fps)) for fp in fps)
    return 1.0 - total / len(fps) ** 2
