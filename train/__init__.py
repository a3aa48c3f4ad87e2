"""Learning side of the AVS toolkit: models, losses, data loading, training loop."""
