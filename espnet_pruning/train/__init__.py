"""espnet_pruning.train."""
