"""espnet_pruning.reports: the paper's tables, figures and tests from a finished run.

* :mod:`~espnet_pruning.reports.pruning_table`: Tables 1 and 2 (Param% One / All and
  every task's metric per system and pruning level);
* :mod:`~espnet_pruning.reports.continual_report`: the continual-learning report
  (§4.1, the series of Figure 2);
* :mod:`~espnet_pruning.reports.plots`: Figure 2 (forgetting curves), Figure 3 (task
  overlap) and the per-layer sparsity plot;
* :mod:`~espnet_pruning.reports.significance`: the matched-pairs test between two systems;
* :mod:`~espnet_pruning.reports.figures`: SLURP's official figures beside a metric, as
  rows of ``RESULTS.md``.

They read what the recipe wrote (scores of :mod:`espnet_pruning.scoring`, mask sets of
:mod:`espnet_pruning.pruning`); nothing below imports them.
"""
