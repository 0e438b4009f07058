"""How many distinct molecules have a synthetic-accessibility (SA) score near its floor of 1:
the pools a top-k SA target of the `molecules` app is drawn from.

    python scripts/molecules_sa_census.py                         # NCI 5K, MOSES, aromatics
    python scripts/molecules_sa_census.py --prior RUN/prior.pt --seed 0 --samples 20000

For each set: its distinct valid molecules, the mean SA of its best ``k`` (100), and how many
score at most 1.0, 1.07, 1.1 and 1.2 (RDKit's ``sascorer``, the app's oracle, clipped at 1).
The sets: RDKit's NCI ``first_5K.smi``; the first ``--moses`` MOSES training SMILES (the
prior's language); benzene with 0-3 substituents from
``spikegrad.apps.molecules.aromatics.SUBSTITUENTS`` on any ring positions (small aromatics,
where the SA floor lies); two such phenyls (0-1 substituent each) joined by a bond or one of
``LINKERS`` (diaryl methanes, ethers, amines, ...); both enumerations together; and, with
``--prior``, samples of a pretrained prior (``prior.pt`` of a default run of that
``--seed``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from spikegrad.apps.molecules.aromatics import (LINKERS, linked_benzenes,  # noqa: E402
                                                substituted_benzenes)

THRESHOLDS = (1.0, 1.07, 1.1, 1.2)


def census(name: str, smiles: Iterable[str], k: int = 100) -> str:
    """One line: distinct valid molecules, mean SA of the best ``k``, counts at thresholds."""
    from spikegrad.data import molecules as chem
    distinct = sorted({chem.canonical(s) for s in smiles} - {None})
    sa = sorted(x for x in chem.sa_scores(distinct) if x is not None)
    best = f"{sum(sa[:k]) / k:.3f}" if len(sa) >= k else "n/a"
    counts = ", ".join(f"<= {t:g}: {sum(x <= t + 1e-9 for x in sa)}" for t in THRESHOLDS)
    return f"{name}: {len(sa)} distinct valid; best {k} mean SA {best}; {counts}"


def prior_samples(path: Path, seed: int, n: int) -> List[str]:
    """``n`` samples (temperature 1) of the default-config prior in ``path``."""
    import torch
    from spikegrad.apps.molecules import arms
    from spikegrad.apps.molecules.config import Config
    from spikegrad.apps.molecules.models import SmilesGRU
    from spikegrad.apps.molecules.run import _load_smiles
    c = Config(seed=seed)
    _, _, vocab = _load_smiles(c)
    prior = SmilesGRU(len(vocab), c.gen_hidden, c.gen_layers)
    prior.load_state_dict(torch.load(path, weights_only=False)["state"])
    prior.eval()
    out: List[str] = []
    with torch.no_grad():
        for i in range(0, n, 1000):
            g = torch.Generator().manual_seed(100 + i // 1000)
            seqs, _, _ = prior.sample(min(1000, n - i), c.max_len, g)
            out += arms.decode(seqs, vocab)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moses", type=int, default=50000, help="first N MOSES training SMILES")
    ap.add_argument("--k", type=int, default=100, help="the top-k whose mean SA is printed")
    ap.add_argument("--prior", type=Path, help="a default run's prior.pt to sample")
    ap.add_argument("--seed", type=int, default=0, help="the seed that run used")
    ap.add_argument("--samples", type=int, default=20000, help="prior samples to draw")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from spikegrad.data import molecules as chem
    print(census("NCI first_5K", chem.load_nci_smiles(), args.k), flush=True)
    print(census(f"MOSES first {args.moses}", chem.load_moses_smiles(limit=args.moses),
                 args.k), flush=True)
    benzenes, linked = substituted_benzenes(), linked_benzenes()
    print(census("benzene + 0-3 substituents", benzenes, args.k), flush=True)
    print(census(f"two phenyls (0-1 substituent each) joined by {len(LINKERS)} linkers",
                 linked, args.k), flush=True)
    print(census("both enumerations together", benzenes + linked, args.k), flush=True)
    if args.prior is not None:
        print(census(f"{args.samples} prior samples (seed {args.seed})",
                     prior_samples(args.prior, args.seed, args.samples), args.k), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
