"""Labels of classification outputs: the first whitespace-separated token of a text."""

from typing import List, Optional, Tuple

from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.text import PairedTexts


@typechecked
def first_token(text: str) -> Optional[str]:
    """The label of a text: its first whitespace-separated token.

    Args:
        text: ``em:hap SEP i am happy``, ``command:yes``, ...

    Returns:
        The first token, or ``None`` for an empty text.
    """
    words = text.split()
    return words[0] if words else None


@typechecked
def label_pairs(paired: PairedTexts) -> Tuple[List[str], List[Optional[str]]]:
    """Reference and predicted labels of paired texts.

    Args:
        paired: Texts from :func:`espnet_pruning.scoring.text.pair_texts`.

    Returns:
        ``(reference labels, predicted labels)``; a predicted label is ``None`` where the
        hypothesis is empty (or missing).

    Raises:
        ScoringError: A reference text is empty (it has no label).
    """
    ref_labels: List[str] = []
    for uttid, ref in zip(paired.uttids, paired.refs):
        label = first_token(ref)
        if label is None:
            raise ScoringError(
                f"reference of utterance {uttid!r} is empty (no label)", uttid, "ref"
            )
        ref_labels.append(label)
    return ref_labels, [first_token(h) for h in paired.hyps]
