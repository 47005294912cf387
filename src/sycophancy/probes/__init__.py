"""Probes: items built from data, scored with a model, decided and measured; one module per kind."""
