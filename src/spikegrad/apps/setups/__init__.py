"""Experiment set-ups that more than one app trains (config, data, model, objective,
evaluation). An app module adds its run and report on top; apps import set-ups, never each
other."""
