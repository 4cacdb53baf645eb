"""mpi4py.futures' MPIPoolExecutor, its workers started by mpirun (all ranks but rank 0):

    mpirun --oversubscribe -n 3 python -m mpi4py.futures mpi4py_futures.py
"""

import os

from mpi4py.futures import MPIPoolExecutor, wait

import peerlib as P


def main():
    reps, n_rt, n_tp = (3, 200, 2000) if P.quick() else (11, 2000, 20000)
    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        pids = set(ex.map(P.pid_now, range(4 * workers)))

        def one(n):
            for i in range(n):
                ex.submit(P.double, i).result()

        def many(n):
            wait([ex.submit(P.double, i) for i in range(n)])

        rt = P.median_per_op(reps, n_rt, one)
        tp = P.median_per_op(reps, n_tp, many)
        idle = P.idle_over(lambda: ex.submit(P.sleep_s, 1.0).result(), sorted(pids - {os.getpid()}))
    P.report(f"mpi4py.futures MPIPoolExecutor ({workers} worker ranks)", rt, tp, idle, "one submit per job")


if __name__ == "__main__":
    main()
