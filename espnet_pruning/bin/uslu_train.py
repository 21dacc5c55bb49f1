#!/usr/bin/env python3
"""Train a UniverSLU model with ESPnet's Trainer.

Example:
    python -m espnet_pruning.bin.uslu_train --config conf/train.yaml \\
        --token_list data/token_list/tokens.txt --output_dir exp/uslu \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/raw/train/text,text,text \\
        --train_data_path_and_name_and_type dump/raw/train/prompt,prompt,text ...
"""

from espnet_pruning.bin.cli import run_task_main
from espnet_pruning.tasks.uslu import USLUTask


def get_parser():
    """The argument parser (ESPnet's generic options plus UniverSLU's)."""
    return USLUTask.get_parser()


def main(cmd=None):
    """Run training; bad input ends with one message and exit status 1."""
    run_task_main(USLUTask, cmd)


if __name__ == "__main__":
    main()
