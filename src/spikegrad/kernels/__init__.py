"""Fast paths for neuron sequences and synapses; each equals the reference loop."""
