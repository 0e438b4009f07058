"""Fast paths for neuron sequences (leaky, numba_leaky) and synapses (event_linear); each
equals the reference loop / dense op. Submodules are imported where used, so numba loads only
when its backend runs."""
