"""Training code for vmatte: data pipeline, losses and the training loop (installed as vmatte.training)."""
