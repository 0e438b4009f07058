"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), split for training.

Ships with scikit-learn, so it works offline; scikit-learn is imported lazily.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch

from .splits import Split, require

__all__ = ["load_digits_split"]


def load_digits_split(test_size: float = 0.25, seed: int = 0) -> Split:
    """Load ``sklearn.datasets.load_digits`` as a stratified train/test split.

    Pixels (integers 0..16) are divided by 16, so inputs lie in [0, 1] and can be used
    directly as per-step spike probabilities by :func:`spikegrad.data.rate`.

    Args:
        test_size: fraction of the samples in the test set, in (0, 1). The test set has
            ``ceil(1797 * test_size)`` samples (450 for the default).
        seed: ``random_state`` of ``sklearn.model_selection.train_test_split``.

    Returns:
        :class:`Split` with float32 inputs and int64 labels; the class proportions of
        both parts match the whole set (``stratify=y``).

    Shapes:
        x_train ``[1347, 64]``, y_train ``[1347]``, x_test ``[450, 64]``, y_test ``[450]``
        (default ``test_size``); features are the 8x8 image in row-major order.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, Real) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    datasets = require("sklearn.datasets", "scikit-learn")
    model_selection = require("sklearn.model_selection", "scikit-learn")

    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=float(test_size), stratify=y, random_state=int(seed)
    )
    return Split(
        torch.from_numpy(np.ascontiguousarray(x_tr)),
        torch.from_numpy(np.ascontiguousarray(y_tr)),
        torch.from_numpy(np.ascontiguousarray(x_te)),
        torch.from_numpy(np.ascontiguousarray(y_te)),
    )
