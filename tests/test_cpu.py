import subprocess
import sys
import time

import torch

from faststeal import cpu


def test_fair_threads_leaves_the_neighbours_their_cores():
    g = cpu.ThreadGovernor(cores=4, local_procs=1)
    assert [g.fair_threads(x) for x in (0.0, 0.5, 0.7, 1.2, 2.9, 3.9, 8.0)] == [4, 4, 3, 3, 1, 1, 1]
    assert cpu.ThreadGovernor(cores=4, local_procs=2).fair_threads(0.0) == 2   # torchrun's ranks share


def test_the_governor_sees_a_busy_neighbour():
    g = cpu.ThreadGovernor(cores=cpu.available_cores(), interval=0.0)
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.5)
        g.others()                                    # start the interval while the neighbour spins
        time.sleep(1.5)
        seen = g.others()
    finally:
        spinner.wait()
    assert seen is not None and seen >= 0.3, seen   # most of a core (less on a machine that is busy anyway)


def test_pinned_threads_are_never_changed():
    before = torch.get_num_threads()
    try:
        assert cpu.configure(1)[0] == 1 and cpu._governor is None
        cpu.adapt()
        assert torch.get_num_threads() == 1
        chosen, _ = cpu.configure(None)
        assert 1 <= chosen <= cpu.available_cores() and cpu._governor is not None
    finally:
        cpu._governor = None
        torch.set_num_threads(before)


def test_a_thread_count_also_sizes_the_blas_pools_scipy_uses():
    """The FID's eigenvalue problems run in scipy's LAPACK, whose pool ignores torch's thread count."""
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        cpu.configure(threads=1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
        assert torch.get_num_threads() == 1
    finally:
        cpu.set_threads(before)
