"""Reading ESPnet text files, cleaning hypotheses and pairing them with references.

An ESPnet ``text`` file has one utterance per line: ``<uttid> <text...>`` (the id, a
space or tab, the text; the text may be empty). Hypotheses of the Whisper-based model may
still carry prompt and special tokens such as ``<|en|> <|ic|> <|slurp|>``;
:func:`strip_prompt_tokens` removes them and :func:`pair_texts` applies it to both sides,
so no scorer ever sees them.
"""

import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError

#: A Whisper-style special token: ``<|en|>``, ``<|ic|>``, ``<|0.00|>``, ``<|endoftext|>``.
PROMPT_TOKEN = re.compile(r"<\|[^|<>\s]*\|>")

#: Typographic apostrophes that :func:`normalize_for_wer` maps to ``'``.
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}

#: How many offending utterance ids an error message lists.
_SHOW_IDS = 5


@typechecked
def read_text(path: Union[str, Path]) -> Dict[str, str]:
    """Read an ESPnet text file into ``{uttid: text}``.

    The text is kept as written between the id and the line end, without leading and
    trailing white space (runs of white space inside it are kept: SLURP's character
    distance sees them); a line holding only an id maps to the empty text. A trailing
    newline is optional; ``\\r\\n`` line ends are accepted.

    Args:
        path: The file.

    Returns:
        The texts, in file order.

    Raises:
        ScoringError: The file cannot be read or is not UTF-8, a line is empty or starts
            with whitespace (no id), or an utterance id occurs twice. The message names the
            file and the line number.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScoringError(f"cannot read {path}: {e.strerror or e}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    texts: Dict[str, str] = {}
    first_line: Dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ScoringError(f"{where}: not UTF-8 text ({e.reason})") from None
        line = line.rstrip("\r")
        if not line.strip():
            raise ScoringError(f"{where}: empty line; expected '<uttid> <text>'")
        if line[0].isspace():
            raise ScoringError(
                f"{where}: line starts with whitespace; expected '<uttid> <text>'"
            )
        fields = line.split(maxsplit=1)
        uttid = fields[0]
        if uttid in texts:
            raise ScoringError(
                f"{where}: duplicate utterance id {uttid!r} "
                f"(first on line {first_line[uttid]})"
            )
        texts[uttid] = fields[1].strip() if len(fields) > 1 else ""
        first_line[uttid] = lineno
    return texts


@typechecked
def strip_prompt_tokens(text: str, keep_spaces: bool = False) -> str:
    """Remove every ``<|...|>`` token and (unless ``keep_spaces``) collapse whitespace.

    Tokens are removed wherever they occur, also when glued to each other or to a word
    (``<|en|><|ic|>alarm_set`` gives ``alarm_set``).

    Args:
        text: A hypothesis (or reference) text.
        keep_spaces: Keep the white space between the remaining words as it is (only
            the ends are stripped) instead of collapsing it.

    Returns:
        The text without special tokens, single-spaced (unless ``keep_spaces``), without
        leading or trailing space.
    """
    if keep_spaces:
        return PROMPT_TOKEN.sub("", text).strip()
    return " ".join(PROMPT_TOKEN.sub(" ", text).split())


@typechecked
def normalize_for_wer(text: str) -> str:
    """The normalisation applied identically to references and hypotheses before WER.

    1. Typographic apostrophes (U+2019, U+2018, U+02BC) become ``'``.
    2. Upper-case (``str.upper``; LibriSpeech references are upper case).
    3. Every punctuation character (Unicode category ``P*``) except ``'`` becomes a
       space: ``"Hello, world."`` -> ``HELLO WORLD``; ``twenty-one`` -> ``TWENTY ONE``;
       ``don't`` stays ``DON'T``. Note that ``% # & @ *`` are punctuation (``Po``) too;
       symbols (``$ + = < >``, category ``S*``) are kept.
    4. Runs of whitespace collapse to one space; leading and trailing space is removed.

    Step 3 also removes the characters sclite's ``trn`` format gives a meaning to
    (``( ) { } / ;``).

    Args:
        text: A transcript.

    Returns:
        The normalised transcript (words separated by single spaces).
    """
    for src, dst in _APOSTROPHES.items():
        text = text.replace(src, dst)
    text = text.upper()
    chars = [
        " " if c != "'" and unicodedata.category(c).startswith("P") else c for c in text
    ]
    return " ".join("".join(chars).split())


@dataclasses.dataclass(frozen=True)
class PairedTexts:
    """References and hypotheses aligned by utterance id (reference order).

    Attributes:
        uttids: Every reference utterance id.
        refs: Reference texts, prompt tokens stripped.
        hyps: Hypothesis texts, prompt tokens stripped; ``""`` where missing.
        missing: Ids of references without a hypothesis.
    """

    uttids: Tuple[str, ...]
    refs: Tuple[str, ...]
    hyps: Tuple[str, ...]
    missing: Tuple[str, ...]

    @property
    def n(self) -> int:
        """Number of utterances scored."""
        return len(self.uttids)

    @property
    def n_missing(self) -> int:
        """Number of references without a hypothesis."""
        return len(self.missing)


def _some_ids(ids: Tuple[str, ...]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOW_IDS])
    more = f" and {len(ids) - _SHOW_IDS} more" if len(ids) > _SHOW_IDS else ""
    return shown + more


@typechecked
def pair_texts(
    refs: Mapping[str, str], hyps: Mapping[str, str], keep_spaces: bool = False
) -> PairedTexts:
    """Pair hypotheses with references by utterance id.

    Prompt tokens are stripped from both sides (:func:`strip_prompt_tokens`). A reference
    without a hypothesis is scored against the empty hypothesis and listed in
    :attr:`PairedTexts.missing` (:func:`apply_missing_policy` drops such references
    first where they are to be skipped).

    Args:
        refs: ``{uttid: reference text}``.
        hyps: ``{uttid: hypothesis text}``.
        keep_spaces: Passed to :func:`strip_prompt_tokens`.

    Returns:
        The paired texts.

    Raises:
        ScoringError: There are no references, or hypotheses exist for ids that have no
            reference (the message names them).
    """
    if not refs:
        raise ScoringError("no reference utterances to score")
    unknown = tuple(u for u in hyps if u not in refs)
    if unknown:
        raise ScoringError(
            f"{len(unknown)} hypothesis utterance id(s) have no reference: "
            f"{_some_ids(unknown)}",
            unknown[0],
            "hyp",
        )
    uttids = tuple(refs)
    missing = tuple(u for u in uttids if u not in hyps)
    return PairedTexts(
        uttids=uttids,
        refs=tuple(strip_prompt_tokens(refs[u], keep_spaces) for u in uttids),
        hyps=tuple(strip_prompt_tokens(hyps.get(u, ""), keep_spaces) for u in uttids),
        missing=missing,
    )


#: What to do with a reference that has no hypothesis: ``skip`` it (SLURP's official
#: scorer) or score it against the ``empty`` hypothesis.
MISSING_POLICIES = ("skip", "empty")


@typechecked
def apply_missing_policy(
    refs: Mapping[str, str], hyps: Mapping[str, str], policy: str
) -> Tuple[Dict[str, str], Tuple[str, ...]]:
    """The references to score under a policy for missing hypotheses.

    Args:
        refs: ``{uttid: reference text}``.
        hyps: ``{uttid: hypothesis text}``.
        policy: ``skip`` (references without a hypothesis are left out, as SLURP's
            ``evaluate.py`` does) or ``empty`` (they stay, scored as empty hypotheses).

    Returns:
        ``(references to score, ids of the references without a hypothesis)``; the ids
        are reported under either policy.

    Raises:
        ScoringError: Unknown policy, or ``skip`` leaves nothing to score.
    """
    if policy not in MISSING_POLICIES:
        raise ScoringError(
            f"missing-hypothesis policy {policy!r} is not one of {MISSING_POLICIES}"
        )
    missing = tuple(u for u in refs if u not in hyps)
    if policy == "empty":
        return dict(refs), missing
    if refs and len(missing) == len(refs):
        raise ScoringError(
            f"none of the {len(refs)} references has a hypothesis (nothing to score; "
            "'--missing empty' scores them as empty hypotheses)"
        )
    return {u: t for u, t in refs.items() if u in hyps}, missing
