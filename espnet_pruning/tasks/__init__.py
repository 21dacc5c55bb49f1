"""espnet_pruning.tasks."""
