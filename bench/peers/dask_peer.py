"""Dask's distributed scheduler on a local cluster of 2 worker processes, 1 thread each."""

import os
import warnings

import peerlib as P


def main():
    from dask.distributed import Client, LocalCluster, wait

    warnings.filterwarnings("ignore")
    reps, n_rt, n_tp = (3, 50, 500) if P.quick() else (7, 300, 3000)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.gather(client.map(P.pid_now, range(4), pure=False))

    def one(n):
        for i in range(n):
            client.submit(P.double, i, pure=False).result()

    def many(n):
        wait(client.map(P.double, range(n), pure=False))

    rt = P.median_per_op(reps, n_rt, one)
    tp = P.median_per_op(reps, n_tp, many)
    # The scheduler runs in this process; the workers (and their nannies) are its descendants.
    pids = P.descendants()
    idle = P.idle_over(lambda: client.submit(P.sleep_s, 1.0, pure=False).result(), pids)
    client.close()
    cluster.close()
    P.report("Dask distributed (LocalCluster, 2 processes)", rt, tp, idle, "scheduler in the spawner; "
             "workers' idle counts every descendant process")


if __name__ == "__main__":
    os.environ.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")
    main()
