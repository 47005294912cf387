"""Summary tables, W&B/CSV logging and the sweep report."""
