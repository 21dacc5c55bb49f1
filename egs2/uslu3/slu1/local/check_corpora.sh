#!/usr/bin/env bash
# Check that IEMOCAP, SLURP and LibriSpeech (db.sh) and the Whisper checkpoint are in place
# before any job starts; prints the preparation commands, writes nothing.
exec local/data.sh --dry_run true "$@"
