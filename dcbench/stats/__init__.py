"""Statistics for comparing condensation methods over seeds and tasks.

The protocol is fixed in advance (the README's "Statistics" section states it) so that no test is chosen
after seeing the data:

* One cell (:mod:`.cells`): per-seed means, their SD and t-interval; the synthesis seed is the
  unit of replication.
* Within a task (:mod:`.two_sample`, :mod:`.within_tasks`): two-sided paired t where the
  recorded design pairs two methods (:mod:`.design`: same seeds, initial images and evaluation
  networks), Welch t otherwise, with the CI of the difference and a named effect size; Holm
  (:mod:`.multiplicity`) over every comparison of the report; the smallest difference each test
  could detect and the variance decomposition by seed and network (:mod:`.power`).
* Across tasks: mean ranks, the Friedman test with an exact or permutation p and the Nemenyi
  post-hoc (:mod:`.friedman`); pairwise Wilcoxon signed-rank tests with Holm over a family chosen
  from the design so that it can reach α (:mod:`.across_tasks`); win/tie/loss counts otherwise.

Everything here is pure (numpy / scipy / pandas, no I/O). Scores are in whatever unit the caller
passes; dcbench's report passes accuracy in percent.
"""

from dcbench.stats.across_tasks import (
    ALL_PAIRS,
    VS_REFERENCE,
    WILCOXON_COLUMNS,
    WILCOXON_DECIMALS,
    PairFamily,
    candidate_families,
    choose_family,
    smallest_wilcoxon_p,
    tasks_needed,
    wilcoxon_across_tasks,
)
from dcbench.stats.cells import (
    CELL_KEYS,
    CELL_SUMMARY_COLUMNS,
    TASK_KEYS,
    seed_scores,
    summarize_cell,
    summarize_cells,
    t_interval,
)
from dcbench.stats.design import INIT_STREAM, Pairing, SeedDesign, design_of, pairing
from dcbench.stats.friedman import (
    APPROXIMATION_MIN_METHODS,
    APPROXIMATION_MIN_TASKS,
    NEMENYI_COLUMNS,
    NEMENYI_MIN_TASKS,
    PERMUTATIONS,
    FriedmanResult,
    friedman_exact_p,
    friedman_permutation_p,
    friedman_test,
    nemenyi_cd,
    nemenyi_posthoc,
    nemenyi_q,
    omnibus_tests,
    rank_within_tasks,
    task_score_matrix,
)
from dcbench.stats.multiplicity import holm, smallest_holm_p
from dcbench.stats.power import (
    POWER,
    detectable_difference,
    mean_variance,
    paired_standard_error,
    seeds_needed,
    t_power,
    variance_components,
    welch_standard_error,
)
from dcbench.stats.two_sample import (
    EFFECT_SIZE_KINDS,
    G_AV,
    HEDGES_G,
    TwoSampleTest,
    compare_samples,
    g_av,
    hedges_g,
    paired_t,
    welch_t,
)
from dcbench.stats.within_tasks import (
    COMPARISON_COLUMNS,
    WIN_TIE_LOSS_COLUMNS,
    compare_within_tasks,
    planned_pairs,
    win_tie_loss,
)

__all__ = [
    "ALL_PAIRS",
    "APPROXIMATION_MIN_METHODS",
    "APPROXIMATION_MIN_TASKS",
    "CELL_KEYS",
    "CELL_SUMMARY_COLUMNS",
    "COMPARISON_COLUMNS",
    "EFFECT_SIZE_KINDS",
    "FriedmanResult",
    "G_AV",
    "HEDGES_G",
    "INIT_STREAM",
    "POWER",
    "Pairing",
    "SeedDesign",
    "design_of",
    "detectable_difference",
    "mean_variance",
    "paired_standard_error",
    "pairing",
    "seeds_needed",
    "t_power",
    "variance_components",
    "welch_standard_error",
    "NEMENYI_COLUMNS",
    "NEMENYI_MIN_TASKS",
    "PERMUTATIONS",
    "PairFamily",
    "TASK_KEYS",
    "TwoSampleTest",
    "VS_REFERENCE",
    "WILCOXON_COLUMNS",
    "WILCOXON_DECIMALS",
    "WIN_TIE_LOSS_COLUMNS",
    "candidate_families",
    "choose_family",
    "compare_samples",
    "compare_within_tasks",
    "friedman_exact_p",
    "friedman_permutation_p",
    "friedman_test",
    "g_av",
    "hedges_g",
    "holm",
    "nemenyi_cd",
    "nemenyi_posthoc",
    "nemenyi_q",
    "omnibus_tests",
    "paired_t",
    "planned_pairs",
    "rank_within_tasks",
    "seed_scores",
    "smallest_holm_p",
    "smallest_wilcoxon_p",
    "summarize_cell",
    "summarize_cells",
    "t_interval",
    "task_score_matrix",
    "tasks_needed",
    "welch_t",
    "wilcoxon_across_tasks",
    "win_tie_loss",
]
