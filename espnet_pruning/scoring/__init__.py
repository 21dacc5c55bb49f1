"""espnet_pruning.scoring."""
