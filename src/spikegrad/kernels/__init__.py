"""Fast paths for neuron sequences and synapses, below ``functional``: the backend registry
(:mod:`.registry`, which decides what runs), the fused leaky family (:mod:`.leaky` with its
torch, numba and Triton recursions), ALIF (:mod:`.adaptive`), fused ``Linear -> LIF`` pairs
(:mod:`.projected`) and event-driven projections (:mod:`.event_linear`); each equals the
reference loop / dense op. Submodules are imported where used, so numba loads only when its
backend runs."""
