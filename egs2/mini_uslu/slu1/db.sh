# Corpus locations. The mini corpus is generated (espeak-ng), so nothing is needed here;
# recipes of the real corpora set IEMOCAP=, SLURP=, LIBRISPEECH=, FSC=, SNIPS=, SPEECHCOMMANDS=.
MINI_USLU=${MINI_USLU:-downloads}
