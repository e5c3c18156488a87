"""Parameter-budget reports: measured budgets of every tuning method, published numbers, and the budget plot."""

from .budget import MethodBudget, budget_model_config, measure_method, param_budget, split_trainable
from .published import PUBLISHED, RULES, PublishedRow, delta_m, recomputed_delta_m, reference_row
from .reproduce import PublishedComparison, compare_published, flag, mtlora_taps

__all__ = sorted([
    "MethodBudget", "PUBLISHED", "PublishedComparison", "PublishedRow", "RULES", "budget_model_config",
    "compare_published", "delta_m", "flag", "measure_method", "mtlora_taps", "param_budget", "recomputed_delta_m",
    "reference_row", "split_trainable",
])
