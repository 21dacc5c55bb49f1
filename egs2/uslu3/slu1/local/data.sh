#!/usr/bin/env bash
# Data of the 3-task UniverSLU (paper §4, Table 1): ER on IEMOCAP, IC on SLURP, ASR on
# LibriSpeech. The 7-task recipe's preparation restricted to these tasks; see
# ../../uslu7/slu1/local/data.sh for the sets and options (--dry_run true, ...).
exec ../../uslu7/slu1/local/data.sh --tasks "er_iemocap ic_slurp asr_librispeech" "$@"
