"""Training an adapter: items, balanced batches, the LightningModule."""
