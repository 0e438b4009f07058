"""Small aromatics enumerated by rule: the region of chemical space where the SA score reaches
its floor of 1 (benzene, toluene, biphenyl, diphenyl methane and ether, ...), far below the
MOSES molecules a prior learns from. Arm A's token proxy is given oracle labels here
(``easy_labels``) so that its gradient can point the generator beyond the prior's region;
``scripts/molecules_sa_census.py`` counts how many of them score near 1."""

from __future__ import annotations

import itertools
import random
from typing import List, Sequence

__all__ = ["SUBSTITUENTS", "LINKERS", "substituted_benzenes", "substituted_phenyls",
           "linked_benzenes", "easy_molecules"]

#: substituents put on benzene: common, small groups (phenyl and benzyl make biphenyls)
SUBSTITUENTS = ("C", "CC", "Cl", "F", "Br", "I", "OC", "O", "N", "C(=O)O", "C(C)C",
                "c2ccccc2", "C#N", "C(F)(F)F", "N(C)C", "C(=O)C", "OCC", "SC",
                "[N+](=O)[O-]", "Oc2ccccc2", "Cc2ccccc2")
#: what joins the two rings of :func:`linked_benzenes`: a bond (biphenyl), short chains, an
#: ether, amine, ketone, amide, ester, thioether, sulfone and an ethene
LINKERS = ("", "C", "CC", "CCC", "O", "OC", "OCC", "N", "NC", "C(=O)", "C(=O)N", "C(=O)O",
           "S", "S(=O)(=O)", "C=C", "COC", "CN")


def substituted_benzenes(substituents: Sequence[str] = SUBSTITUENTS,
                         most: int = 3) -> List[str]:
    """SMILES (not canonical, with repeats) of benzene with 0..``most`` of ``substituents``
    on distinct ring atoms."""
    out = []
    for k in range(most + 1):
        for pos in itertools.combinations(range(6), k):
            for groups in itertools.product(substituents, repeat=k):
                atoms = ["c"] * 6
                for p, g in zip(pos, groups):
                    atoms[p] = f"c({g})"
                out.append(atoms[0] + "1" + "".join(atoms[1:]) + "1")
    return out


def substituted_phenyls(label: str, attach: int,
                        substituents: Sequence[str] = SUBSTITUENTS) -> List[str]:
    """Phenyl (ring-closure ``label``) with 0 or 1 of ``substituents`` ortho, meta or para to
    ring atom ``attach`` (5: the last atom written, so a linker can follow; 0: the first, so
    it can follow a linker)."""
    if attach not in (0, 5):
        raise ValueError(f"substituted_phenyls: attach must be 0 or 5, got {attach}")

    def ring(pos: int = -1, group: str = "") -> str:
        # the label goes right after the first and last atoms, before any branch
        return "".join("c" + (label if i in (0, 5) else "") + (f"({group})" if i == pos else "")
                       for i in range(6))
    out = [ring()]
    for step in (1, 2, 3):                    # ortho, meta, para (the rest are mirrors)
        pos = attach + step if attach == 0 else attach - step
        out += [ring(pos, g) for g in substituents]
    return out


def linked_benzenes(substituents: Sequence[str] = SUBSTITUENTS,
                    linkers: Sequence[str] = LINKERS) -> List[str]:
    """SMILES ``Ar-L-Ar'`` (not canonical, with repeats): two phenyls, each with 0-1 of
    ``substituents``, joined by each of ``linkers`` (``""``: a direct bond, biphenyl):
    diaryl methanes, ethers, amines, ketones, amides and the like."""
    # distinct ring-closure labels (9, 8) so that the substituents' own rings (2) stay local
    heads = substituted_phenyls("9", 5, substituents)
    tails = substituted_phenyls("8", 0, substituents)
    return [f"{a}{link}{b}" for a in heads for b in tails for link in linkers]


def easy_molecules(n: int, seed: int) -> List[str]:
    """``n`` distinct canonical SMILES drawn at random (``seed``) from
    :func:`substituted_benzenes` and :func:`linked_benzenes` (about 60 000 distinct
    molecules; fewer than ``n`` only if ``n`` exceeds them)."""
    from ...data import molecules as chem
    if n < 0:
        raise ValueError(f"easy_molecules: n must be >= 0, got {n}")
    pool = substituted_benzenes() + linked_benzenes()
    random.Random(seed).shuffle(pool)
    out, seen = [], set()
    for s in pool:
        if len(out) >= n:
            break
        can = chem.canonical(s)
        if can is not None and can not in seen:
            seen.add(can)
            out.append(can)
    return out
