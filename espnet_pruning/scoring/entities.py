"""Parsing entity outputs of the NER task.

Format (the paper's): entity chunks, then the transcript, separated by ``<SEP>`` tokens::

    <entity:date> <FILL> tomorrow <SEP> <entity:time> <FILL> five am <SEP> wake me up ...

The text is split at ``<SEP>`` words; the last chunk is the transcript, every other chunk
is an entity iff it reads ``<entity:TYPE> <FILL> [w1 w2 ...]`` (no further ``<FILL>``,
``<SEP>`` or entity tag among the filler words). The filler is the text from its first to
its last word as written: white space inside it is kept (SLURP's character distance sees
it), and ``<entity:date> <FILL> <SEP>`` has the empty filler (SLURP's scorer counts it as
an entity at distance 1 from any gold filler). Other chunks are malformed. A text without
``<SEP>`` has no entities and is all transcript.
"""

import dataclasses
import re
from typing import List, Optional, Tuple

from typeguard import typechecked

SEP = "<SEP>"
FILL = "<FILL>"
#: An entity tag ``<entity:TYPE>``; group 1 is the type.
ENTITY_TAG = re.compile(r"^<entity:([^\s<>]+)>$")


@dataclasses.dataclass(frozen=True)
class Entity:
    """One entity: its type (``date``) and its filler as written (``tomorrow``)."""

    type: str
    filler: str


@dataclasses.dataclass(frozen=True)
class ParsedEntities:
    """The entities of one text.

    Attributes:
        entities: Well-formed entity chunks in text order.
        transcript: The last chunk.
        malformed: Chunks (before the transcript) that are not entities, as text.
    """

    entities: Tuple[Entity, ...]
    transcript: str
    malformed: Tuple[str, ...]


#: A word of the text, with its position (``match.group()``, ``match.start()``, ...).
_WORD = re.compile(r"\S+")


def _entity_of(text: str, chunk: List[re.Match]) -> Optional[Entity]:
    if len(chunk) < 2 or chunk[1].group() != FILL:
        return None
    tag = ENTITY_TAG.match(chunk[0].group())
    filler = chunk[2:]
    if tag is None or any(
        w.group() == FILL or ENTITY_TAG.match(w.group()) for w in filler
    ):
        return None
    text_of = text[filler[0].start() : filler[-1].end()] if filler else ""
    return Entity(type=tag.group(1), filler=text_of)


@typechecked
def parse_entities(text: str) -> ParsedEntities:
    """Split an NER text into entities and transcript.

    Args:
        text: A reference or hypothesis (prompt tokens already stripped).

    Returns:
        The parsed text; malformed chunks are listed, not raised.
    """
    chunks: List[List[re.Match]] = [[]]
    for word in _WORD.finditer(text):
        if word.group() == SEP:
            chunks.append([])
        else:
            chunks[-1].append(word)
    entities: List[Entity] = []
    malformed: List[str] = []
    for chunk in chunks[:-1]:
        entity = _entity_of(text, chunk)
        if entity is None:
            malformed.append(" ".join(w.group() for w in chunk))
        else:
            entities.append(entity)
    return ParsedEntities(
        entities=tuple(entities),
        transcript=" ".join(w.group() for w in chunks[-1]),
        malformed=tuple(malformed),
    )
