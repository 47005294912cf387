"""Mitigations: what a run puts around the prompt or into the model; one module per family."""
