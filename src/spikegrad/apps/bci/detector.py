"""A change detector on the running decoding error that raises the online learning rate
while the error stands well above its recent level: the closed-loop decoder's answer to an
abrupt change (channels lost, tuning rotated) without a larger step, and so more weight noise,
the rest of the time.

Adaptive filters have long tied the step size to the error (variable step-size LMS:
Kwong & Johnston 1992, IEEE Trans. Signal Process. 40:1633), and closed-loop BCIs adapt
faster when a change is detected (e.g. Dangi et al. 2013, Neural Comput. 25:1693, on
adaptation rates of closed-loop decoder adaptation). Here the error is the fraction of the
target's power left unexplained, ``sum (y - y*)^2 / sum y*^2`` (so slow and fast movement
weigh alike), each sum an exponential average over update windows, twice: a fast one
(``fast`` updates) and a slow baseline (``slow`` updates); averaging numerator and
denominator apart keeps a window of near-rest from dividing by almost nothing. While the fast one exceeds ``threshold`` times the
baseline, the factor is ``boost``, else 1. The baseline keeps following the error, so after
a lasting change the alarm ends on its own once the new error level has become the normal
one (about ``slow`` updates at most), whether or not the decoder has recovered.

Only past errors enter: the factor for the next update depends on the windows seen so far.
"""

from __future__ import annotations

import math

__all__ = ["ErrorJumpBoost"]


class ErrorJumpBoost:
    """Learning-rate factor from a fast/slow comparison of the running error.

    Args:
        fast, slow: time constants of the two exponential averages, in updates
            (``fast < slow``).
        threshold: the alarm rings while ``fast average > threshold * slow average``
            (> 1).
        boost: the factor during an alarm (>= 1; 1 switches the detector off).
        warmup: updates before any alarm (the averages settle first).

    Attributes:
        alarm: whether the last :meth:`update` raised the alarm.
        alarms: updates with the alarm on so far.
    """

    def __init__(self, fast: float, slow: float, threshold: float, boost: float,
                 warmup: int = 0):
        for name, v in (("fast", fast), ("slow", slow), ("threshold", threshold),
                        ("boost", boost)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow (in updates), got fast={fast}, "
                             f"slow={slow}")
        if not threshold > 1:
            raise ValueError(f"threshold must be > 1, got {threshold}")
        if not boost >= 1:
            raise ValueError(f"boost must be >= 1 (1: off), got {boost}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
        self.fast, self.slow = float(fast), float(slow)
        self.threshold, self.boost, self.warmup = float(threshold), float(boost), warmup
        self.reset()

    def reset(self) -> None:
        self._fast = self._slow = None       # [error, target] power averages
        self.updates = self.alarms = 0
        self.alarm = False

    def update(self, sq_error: float, sq_target: float) -> float:
        """Feed one update window: ``sq_error = sum (y - y*)^2`` and ``sq_target = sum
        y*^2`` over it (the target centred, as the decoder's normalised one is). Returns
        the learning-rate factor for the update that follows."""
        if not (math.isfinite(sq_error) and sq_error >= 0 and math.isfinite(sq_target)
                and sq_target >= 0):
            raise ValueError(f"sq_error and sq_target must be finite and >= 0, got "
                             f"{sq_error}, {sq_target}")
        if self._fast is None:
            self._fast, self._slow = [sq_error, sq_target], [sq_error, sq_target]
        else:
            for avg, tau in ((self._fast, self.fast), (self._slow, self.slow)):
                avg[0] += (sq_error - avg[0]) / tau
                avg[1] += (sq_target - avg[1]) / tau
        self.updates += 1
        self.alarm = (self.updates > self.warmup and self._fast[0] * self._slow[1]
                      > self.threshold * self._slow[0] * self._fast[1])
        self.alarms += self.alarm
        return self.boost if self.alarm else 1.0

    def state_dict(self) -> dict:
        return {"fast": None if self._fast is None else list(self._fast),
                "slow": None if self._slow is None else list(self._slow), "updates": self.updates,
                "alarms": self.alarms, "alarm": self.alarm}

    def load_state_dict(self, d: dict) -> None:
        self._fast = None if d["fast"] is None else list(d["fast"])
        self._slow = None if d["slow"] is None else list(d["slow"])
        self.updates, self.alarms, self.alarm = int(d["updates"]), int(d["alarms"]), \
            bool(d["alarm"])
