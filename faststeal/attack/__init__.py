"""Model extraction: the black-box oracle, query sets, fidelity/accuracy extraction, sweeps and transfer."""
from .oracle import BudgetExceeded, LatentPrior, TargetOracle

__all__ = ["TargetOracle", "BudgetExceeded", "LatentPrior"]
