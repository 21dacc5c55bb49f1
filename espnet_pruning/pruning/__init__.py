"""espnet_pruning.pruning."""
