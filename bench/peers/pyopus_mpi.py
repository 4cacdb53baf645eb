"""PyOPUS 0.9's own MPI machine under its cooperative scheduler (cOS), as a PyOPUS user runs it:

    PYTHONPATH=<PyOPUS-0.9> mpirun --oversubscribe -n 3 python pyopus_mpi.py
"""

import os

from pyopus.parallel.cooperative import cOS
from pyopus.parallel.mpi import MPI

import peerlib as P


def main():
    reps, n_rt, n_tp = (3, 100, 500) if P.quick() else (7, 500, 3000)
    cOS.setVM(MPI())
    workers = cOS.slots() - 1
    pids = set(cOS.dispatch(((P.pid_now, [i]) for i in range(4 * workers)), remote=True))

    def one(n):
        for i in range(n):
            cOS.dispatchSingle(P.double, [i], remote=True)

    def many(n):
        cOS.dispatch(((P.double, [i]) for i in range(n)), remote=True)

    rt = P.median_per_op(reps, n_rt, one)
    tp = P.median_per_op(reps, n_tp, many)
    idle = P.idle_over(lambda: cOS.dispatchSingle(P.sleep_s, [1.0], remote=True), sorted(pids - {os.getpid()}))
    cOS.finalize()
    P.report(f"PyOPUS 0.9 MPI machine + cOS ({workers} worker ranks)", rt, tp, idle, "cOS.dispatch")


if __name__ == "__main__":
    main()
