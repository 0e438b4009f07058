"""Applications: one module per use of surrogate gradients; each has ``Config``,
``validate(cfg) -> Config`` and ``run(cfg, out_dir, resume=False) -> Result``."""

import importlib

APPS = {
    "classification": "spikegrad.apps.classification",
    "regression": "spikegrad.apps.regression",
    "vision": "spikegrad.apps.vision",
    "coding": "spikegrad.apps.coding",
    "constraints": "spikegrad.apps.constraints",
    "biophysics": "spikegrad.apps.biophysics",
    "conversion": "spikegrad.apps.conversion",
    "onchip": "spikegrad.apps.onchip",
    "robust": "spikegrad.apps.robust",
    "bci": "spikegrad.apps.bci",
    "molecules": "spikegrad.apps.molecules",
}


def get_app(name: str):
    if name not in APPS:
        raise ValueError(f"unknown app {name!r}; available: {', '.join(sorted(APPS))} "
                         "(spikegrad list)")
    return importlib.import_module(APPS[name])
