"""Training: a plain PyTorch loop with TBPTT, clipping, checkpoints and exact resume."""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .interrupt import TrainingInterrupted
from .learner import Learner
from .log import CsvLogger, JsonLinesLogger, Logger, TensorBoardLogger
from .optim import make_optimizer
from .seed import seed_everything
from .trainer import Objective, ObjectiveOutput, Trainer

__all__ = [
    "Trainer",
    "ObjectiveOutput",
    "Objective",
    "Learner",
    "Logger",
    "JsonLinesLogger",
    "CsvLogger",
    "TensorBoardLogger",
    "make_optimizer",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "seed_everything",
    "TrainingInterrupted",
]
