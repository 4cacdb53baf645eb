"""Ray on this machine (ray.init with 2 CPUs): remote functions."""

import os
import warnings

import peerlib as P


def main():
    import ray

    warnings.filterwarnings("ignore")
    reps, n_rt, n_tp = (3, 100, 1000) if P.quick() else (7, 1000, 10000)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    double = ray.remote(P.double)
    sleep_s = ray.remote(P.sleep_s)
    ray.get([double.remote(i) for i in range(100)])

    def one(n):
        for i in range(n):
            ray.get(double.remote(i))

    def many(n):
        ray.get([double.remote(i) for i in range(n)])

    rt = P.median_per_op(reps, n_rt, one)
    tp = P.median_per_op(reps, n_tp, many)
    # The GCS, raylet and worker processes are the driver's descendants.
    pids = P.descendants()
    idle = P.idle_over(lambda: ray.get(sleep_s.remote(1.0)), pids)
    ray.shutdown()
    P.report("Ray (ray.init, 2 CPUs)", rt, tp, idle, "driver in the spawner; the workers' idle is the worst "
             "of every descendant process (GCS, raylet, workers)")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
