#!/usr/bin/env bash
# Check, before any job starts, that every corpus of db.sh is in place (roots, annotation
# files, audio folders) and the Whisper checkpoint of conf/train_uslu.yaml exists; print
# the preparation commands. Writes nothing. Options as local/data.sh (e.g. --tasks).
exec local/data.sh --dry_run true "$@"
