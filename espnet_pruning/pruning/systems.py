"""The kinds of pruned systems the paper compares (Table 1), one name each.

* ``multi_task``: one shared θ, every task uses its own mask of it (Algorithm 2).
* ``single_task``: one θ_t per task, each trained under its task's mask alone.
* ``task_agnostic``: one shared θ and one mask for all tasks, found on their mixed data.

The same strings name the systems in ``slu.sh`` options, experiment directories, reports
and tables.

Examples:
    >>> SystemKind("task_agnostic") is SystemKind.TASK_AGNOSTIC
    True
    >>> [k.value for k in SystemKind]
    ['multi_task', 'single_task', 'task_agnostic']
"""

import enum


class SystemKind(enum.StrEnum):
    """A kind of pruned system; its value is the name used everywhere (a ``str``)."""

    MULTI_TASK = "multi_task"
    SINGLE_TASK = "single_task"
    TASK_AGNOSTIC = "task_agnostic"


#: Every kind's name, in the order of the paper's Table 1.
SYSTEM_KINDS = tuple(k.value for k in SystemKind)
