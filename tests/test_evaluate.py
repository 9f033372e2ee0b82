"""The run's evaluation helpers: the bootstrap interval of fidelity from the kept feature rows."""
import torch

from faststeal.evaluate import fid, fid_interval
from faststeal.metrics.stats import FeatureStats


def _stats(rows: torch.Tensor) -> FeatureStats:
    stats = FeatureStats(dim=rows.shape[1]).update(rows)
    assert stats.rows is not None
    return stats


def test_fid_interval_widens_with_a_worse_copy_and_is_none_without_rows():
    g = torch.Generator().manual_seed(0)
    reference = _stats(torch.randn(300, 16, generator=g, dtype=torch.float64).float())
    close = _stats(torch.randn(300, 16, generator=g, dtype=torch.float64).float())
    far = _stats((torch.randn(300, 16, generator=g, dtype=torch.float64) * 1.5 + 1).float())
    near_ci, far_ci = fid_interval(reference, close), fid_interval(reference, far)
    assert near_ci[0] <= near_ci[1] < far_ci[0] <= far_ci[1]
    assert far_ci[0] <= fid(reference, far) * 1.5 and fid(reference, far) <= far_ci[1] * 1.5
    assert fid_interval(reference, close) == near_ci   # seeded: the same interval every time
    reference.rows = None
    assert fid_interval(reference, close) is None
