"""ESPnet glue of espnet_pruning: batch schedules and training-stage helpers."""
