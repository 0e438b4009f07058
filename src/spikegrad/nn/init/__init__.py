"""Weight initialisation that starts a spiking network in a trainable regime.

PyTorch's default ``Linear`` init, ``U(+-1/sqrt(n))`` for weights and bias, knows nothing
about spikes: sparse spike input through it leaves most neurons silent, and the bias,
integrated by the membrane over ``tau_mem / dt`` steps, drives the others to saturation.
Surrogate gradients then vanish in both groups. Two helpers put each neuron's membrane
where the surrogate gradient lives instead:

* :func:`fluctuation_driven_` (analytic; Rossbroich, Gygax & Zenke 2022, "Fluctuation-driven
  initialization for spiking neural network training", Neuromorph. Comput. Eng. 2, 044016):
  draws ``W ~ N(mu_W, sigma_W^2)`` so that the free (subthreshold, no-reset) membrane
  ``U`` of leaky neurons driven by independent input spikes of rate ``nu`` has mean ``mu_U``
  and standard deviation ``sigma_U`` over neurons and time.
* :func:`data_driven_` (LSUV-style): runs a :class:`~spikegrad.nn.Sequential` on a batch of
  real inputs and rescales each synaptic layer in turn until its neurons reach a target
  firing rate (any spiking neuron, any encoding) or a target free-membrane mean and std.

The theory, in the library's discrete time (``functional.leaky``): an input spike at step 0
with weight 1 leaves the post-synaptic potential ``eps_k`` (``i_k = a_s^k``,
``eps_k = a_m eps_{k-1} + g i_k``; ``a_s = 0`` without a synaptic current, ``g = 1 - a_m``
with ``scale_input``). Its integrals, in steps, are::

    eps_bar = sum_k eps_k   = g / ((1 - a_s) (1 - a_m))
    eps_hat = sum_k eps_k^2 = g^2 (1 + a_s a_m) / ((1 - a_s^2) (1 - a_m^2) (1 - a_s a_m))

(``eps_hat`` is the stationary solution of the kernel's 2x2 Lyapunov equation, so it has no
``1 / (a_m - a_s)`` cancellation). With ``n`` inputs that each spike with probability
``p = nu dt`` per step (Bernoulli, independent) and i.i.d. weights of mean ``mu_W`` and
variance ``sigma_W^2``, the stationary membrane over neurons and time has::

    mu_U      = n p mu_W eps_bar
    sigma_U^2 = n p (1 - p) (sigma_W^2 + mu_W^2) eps_hat  +  n p^2 sigma_W^2 eps_bar^2

The first variance term is the paper's shot noise (Campbell's theorem; Poisson input, where
``1 - p`` is 1); the second is the spread of the neurons' own means, which the paper's
formula leaves out and which is not small (about ``2 nu tau_mem`` times the first: 0.4 at
10 Hz and 20 ms). Targets are ``mu_U`` and ``sigma_U`` directly or through
``xi = (theta - mu_U) / sigma_U``, the distance of the mean from the threshold in standard
deviations (the paper's parameter). A :class:`~spikegrad.nn.Recurrent` neuron gets a
``recurrent_share`` of ``sigma_U^2`` from its recurrent weights and the rest from the
feed-forward layer (the paper's ``alpha = 1 - recurrent_share``), both with the same
``mu_W``; its own spikes are taken as independent input of rate ``rec_rate_hz``.
"""

from __future__ import annotations

from .common import FluctuationInit, LayerInit
from .data import data_driven_
from .fluctuation import fluctuation_driven_, psp_integrals

__all__ = ["psp_integrals", "fluctuation_driven_", "data_driven_", "FluctuationInit",
           "LayerInit"]
