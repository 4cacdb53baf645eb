"""Python's ProcessPoolExecutor with 2 worker processes."""

from concurrent.futures import ProcessPoolExecutor, wait

import peerlib as P


def main():
    reps, n_rt, n_tp = (3, 200, 2000) if P.quick() else (11, 2000, 20000)
    with ProcessPoolExecutor(max_workers=2) as ex:
        list(ex.map(P.pid_now, range(4)))  # start both workers

        def one(n):
            for i in range(n):
                ex.submit(P.double, i).result()

        def many(n):
            wait([ex.submit(P.double, i) for i in range(n)])

        rt = P.median_per_op(reps, n_rt, one)
        tp = P.median_per_op(reps, n_tp, many)
        pids = list(ex._processes.keys())
        idle = P.idle_over(lambda: ex.submit(P.sleep_s, 1.0).result(), pids)
    P.report("ProcessPoolExecutor (2 processes)", rt, tp, idle, "one submit per job")


if __name__ == "__main__":
    main()
