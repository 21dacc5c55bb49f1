"""Whisper's multilingual vocabulary plus UniverSLU's added tokens, offline.

The BPE vocabulary and special tokens come from the tiktoken file shipped inside the
openai-whisper wheel. The token list (one token per line, line number = id) has exactly
Whisper's 51865 entries:

* 0–50256: byte-level BPE tokens, written in the GPT-2 byte-to-unicode alphabet
  (``Ġturn`` = " turn"), as ESPnet's Whisper token lists write them;
* 50257–50363: Whisper's special tokens (``<|endoftext|>`` … ``<|notimestamps|>``);
* 50364 + i: the i-th added token (task, dataset and label tokens), as UniverSLU adds them;
* then timestamps ``<|0.00|>``, ``<|0.02|>``, … filling the list up to 51865.

Added tokens therefore reuse the rows of the first timestamps and a pretrained embedding
keeps its meaning. The order of added tokens defines their ids, so training and decoding
must use the same token list file.

Tokenisation rule: a line is split on whitespace; words that are added or special tokens
become one token each, and each run of other words is BPE-encoded as one string, with a
leading space unless the run starts the line (``em:neu SEP excuse me`` →
``em:neu``, ``ĠS``, ``EP``, ``Ġex``, ``cuse``, ``Ġme``).
"""

import difflib
import functools
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text

#: Size of Whisper's multilingual vocabulary (and of every token list written here).
N_VOCAB = 51865
#: Number of byte-level BPE tokens.
N_BPE = 50257
#: First id given to an added token.
FIRST_ADDED_ID = 50364

SOT = "<|startoftranscript|>"
EOT = "<|endoftext|>"
NO_TIMESTAMPS = "<|notimestamps|>"


class TokenListError(InputError):
    """A token list file or an added-token inventory is invalid."""


@functools.lru_cache(maxsize=1)
def _encoding():
    # Cached: building the encoding reads the 1 MB vocabulary file. Imported here:
    # openai-whisper imports torch (4 s, -X importtime), which data prep never needs.
    from whisper.tokenizer import get_encoding

    return get_encoding("multilingual")


@functools.lru_cache(maxsize=1)
def byte_to_unicode() -> Dict[int, str]:
    """The reversible GPT-2 mapping of the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the 68 others map, in byte order, to
    ``chr(256 + n)``. This is the alphabet in which byte-level BPE vocabularies are written.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> Dict[str, int]:
    return {c: b for b, c in byte_to_unicode().items()}


@functools.lru_cache(maxsize=1)
def whisper_base_tokens() -> List[str]:
    """Whisper's BPE and special (non-timestamp) tokens, ids 0–50363."""
    enc = _encoding()
    b2u = byte_to_unicode()
    tokens = [
        "".join(b2u[b] for b in enc.decode_single_token_bytes(i)) for i in range(N_BPE)
    ]
    specials = sorted(
        (i, t) for t, i in enc._special_tokens.items() if i < FIRST_ADDED_ID
    )
    if [i for i, _ in specials] != list(range(N_BPE, FIRST_ADDED_ID)):
        raise RuntimeError("unexpected special-token layout in openai-whisper")
    return tokens + [t for _, t in specials]


def timestamp_tokens() -> List[str]:
    """Whisper's 1501 timestamp tokens ``<|0.00|>`` … ``<|30.00|>``."""
    return [f"<|{i * 0.02:.2f}|>" for i in range(1501)]


@typechecked
def build_token_list(added_tokens: Sequence[str]) -> List[str]:
    """The 51865-entry token list with ``added_tokens`` at ids 50364, 50365, ….

    Args:
        added_tokens: Task, dataset and label tokens, in id order. Tokens that already are
            Whisper special tokens (e.g. ``<|en|>``) must not be repeated.

    Returns:
        The token list.

    Raises:
        TokenListError: Duplicates, whitespace inside a token, a token already in Whisper's
            special tokens, or more than the 1501 free rows.
    """
    base = whisper_base_tokens()
    specials = set(base[N_BPE:])
    seen = set()
    for token in added_tokens:
        if not token or any(c.isspace() for c in token):
            raise TokenListError(
                f"added token {token!r} is empty or contains whitespace"
            )
        if token in specials:
            raise TokenListError(f"added token {token!r} is already a Whisper token")
        if token in seen:
            raise TokenListError(f"added token {token!r} is listed twice")
        seen.add(token)
    n_free = N_VOCAB - FIRST_ADDED_ID
    if len(added_tokens) > n_free:
        raise TokenListError(f"{len(added_tokens)} added tokens; at most {n_free} fit")
    fill = timestamp_tokens()[: n_free - len(added_tokens)]
    return base + list(added_tokens) + fill


@typechecked
def write_token_list(
    path: Union[str, os.PathLike], added_tokens: Sequence[str]
) -> None:
    """Write the token list atomically (temporary file, then rename)."""
    tokens = build_token_list(added_tokens)
    atomic_write_text(path, "".join(t + "\n" for t in tokens))


@typechecked
def read_token_list(path: Union[str, os.PathLike]) -> List[str]:
    """Read a token list file (one token per line)."""
    path = Path(path)
    if not path.is_file():
        raise TokenListError(f"{path}: token list not found")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


@typechecked
def added_tokens_of(token_list: Sequence[str], source: str = "token list") -> List[str]:
    """Check a token list against Whisper's vocabulary and return its added tokens.

    A token list is Whisper's 50364 BPE and special tokens, the added tokens, and the
    timestamps filling it up to 51865 entries. Entries past 51865 (a vocabulary that ESPnet
    expanded, e.g. the ``<sc>`` of ``sot_asr``) are added tokens too.

    Raises:
        TokenListError: Too short, an entry that differs from Whisper's vocabulary (naming
            the first differing line), misplaced timestamps or a repeated added token.
    """
    if len(token_list) < N_VOCAB:
        raise TokenListError(
            f"{source}: has {len(token_list)} tokens, a Whisper token list has "
            f"{N_VOCAB} (or more)"
        )
    base = whisper_base_tokens()
    for i, (got, want) in enumerate(zip(token_list, base)):
        if got != want:
            raise TokenListError(
                f"{source}: line {i + 1} is {got!r}, Whisper's vocabulary has {want!r}; "
                "not a token list for openai-whisper's multilingual vocabulary"
            )
    stamps = set(timestamp_tokens())
    added = []
    for token in token_list[FIRST_ADDED_ID:N_VOCAB]:
        if token in stamps:
            break
        added.append(token)
    if (
        token_list[FIRST_ADDED_ID + len(added) : N_VOCAB]
        != timestamp_tokens()[: N_VOCAB - FIRST_ADDED_ID - len(added)]
    ):
        raise TokenListError(
            f"{source}: timestamp tokens after the added ones are wrong"
        )
    added += token_list[N_VOCAB:]
    if len(set(added)) != len(added):
        repeated = next(t for t in added if added.count(t) > 1)
        raise TokenListError(f"{source}: added token {repeated!r} is listed twice")
    return added


@typechecked
def check_tokens_present(
    token_list: Sequence[str], required: Sequence[str], source: str
) -> None:
    """Check that whole-word tokens (prompts, labels) are in a token list.

    Raises:
        TokenListError: One message naming every missing token with its nearest
            matches among the special and added tokens (case-insensitive first: a released
            model may spell ``<|SLURP|>`` where our specifiers say ``<|slurp|>``).
    """
    present = set(token_list)
    missing = [t for t in dict.fromkeys(required) if t not in present]
    if not missing:
        return
    # Prompt and label tokens are whole words: compare with the special and added tokens.
    by_lower: Dict[str, str] = {}
    for token in token_list[N_BPE:]:
        by_lower.setdefault(token.lower(), token)
    parts = []
    for token in missing:
        if token.lower() in by_lower:
            close = [token.lower()]
        else:
            close = difflib.get_close_matches(token.lower(), list(by_lower), n=3)
        hint = ", ".join(repr(by_lower[c]) for c in close) or "none close"
        parts.append(f"{token!r} (nearest: {hint})")
    raise TokenListError(
        f"{source}: {len(missing)} prompt/label token(s) are not in the token list: "
        f"{'; '.join(parts)}"
    )


class WhisperTokenizer:
    """Text ↔ tokens ↔ ids with Whisper's BPE and a list of added tokens.

    Args:
        token_list: A token list written by :func:`write_token_list` (path or list).

    Examples:
        >>> tok = WhisperTokenizer(build_token_list(["<|ic|>", "in:lights_on"]))
        >>> tok.text2tokens("in:lights_on SEP turn on")
        ['in:lights_on', 'ĠS', 'EP', 'Ġturn', 'Ġon']
    """

    @typechecked
    def __init__(self, token_list: Union[str, os.PathLike, Sequence[str]]):
        source = "token list"
        if isinstance(token_list, (str, os.PathLike)):
            source = str(token_list)
            token_list = read_token_list(token_list)
        self.token_list = list(token_list)
        self.added_tokens = added_tokens_of(self.token_list, source)
        self.token2id = {t: i for i, t in enumerate(self.token_list)}
        # Whole-word tokens: added ones and Whisper's specials (never BPE-split).
        self.word_tokens = set(self.added_tokens) | set(self.token_list[N_BPE:])

    def text2tokens(self, line: str) -> List[str]:
        """Split a line into token strings (see the module docstring for the rule)."""
        enc = _encoding()
        b2u = byte_to_unicode()
        tokens: List[str] = []
        run: List[str] = []

        def flush(first: bool) -> None:
            if run:
                text = ("" if first else " ") + " ".join(run)
                for i in enc.encode_ordinary(text):
                    tokens.append(
                        "".join(b2u[b] for b in enc.decode_single_token_bytes(i))
                    )
                run.clear()

        at_start = True
        for word in line.split():
            if word in self.word_tokens:
                flush(at_start and not tokens)
                tokens.append(word)
            else:
                run.append(word)
        flush(not tokens)
        return tokens

    def tokens2text(self, tokens: Iterable[str]) -> str:
        """Join token strings back into a line (inverse of :meth:`text2tokens`)."""
        u2b = _unicode_to_byte()
        parts: List[str] = []
        buf = bytearray()

        def flush() -> None:
            if buf:
                parts.append(buf.decode("utf-8", errors="replace").strip())
                buf.clear()

        for token in tokens:
            if token in self.word_tokens:
                flush()
                parts.append(token)
            else:
                buf.extend(u2b[c] for c in token)
        flush()
        return " ".join(p for p in parts if p)

    def tokens2ids(self, tokens: Iterable[str]) -> List[int]:
        """Map token strings to ids; an unknown token raises ``KeyError`` naming it."""
        ids = []
        for t in tokens:
            if t not in self.token2id:
                raise KeyError(f"token {t!r} is not in the token list")
            ids.append(self.token2id[t])
        return ids

    def ids2tokens(self, ids: Iterable[int]) -> List[str]:
        """Map ids to token strings."""
        return [self.token_list[int(i)] for i in ids]

    def text2ids(self, line: str) -> List[int]:
        """Tokenise a line and map it to ids."""
        return self.tokens2ids(self.text2tokens(line))

    def ids2text(self, ids: Iterable[int]) -> str:
        """Map ids back to a line."""
        return self.tokens2text(self.ids2tokens(ids))
