"""Wall-clock comparisons of models run in one process, interleaved.

Machines are noisy: the runs being compared take turns (one call of each per repeat)
after a warm-up call each, and the medians are compared, never absolute times across
processes (``bench/README.md``).
"""

import statistics
import time
from typing import Callable, Dict, Hashable, Mapping

from typeguard import typechecked


@typechecked
def interleaved_medians(
    runs: Mapping[Hashable, Callable[[], object]], repeats: int, warmup: int = 1
) -> Dict[Hashable, float]:
    """The median seconds of every run, the runs called in turn ``repeats`` times.

    Args:
        runs: Name → a call to time.
        repeats: Timed calls of each run (>= 1).
        warmup: Untimed calls of each run first.

    Returns:
        Name → median seconds of one call.

    Examples:
        >>> medians = interleaved_medians({"a": lambda: None, "b": lambda: None}, 3)
        >>> sorted(medians) == ["a", "b"] and all(t >= 0 for t in medians.values())
        True
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: Dict[Hashable, list] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
