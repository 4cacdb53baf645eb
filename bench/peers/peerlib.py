"""What every peer measurement shares: the trivial job, timing, CPU readings, the output line.

Each peer prints one line that run_all.sh turns into table rows:

    PEER <name> | <round trip s> | <trivial jobs/s> | <spawner idle %> | <worst worker idle %> | <note>

Round trip: submit one trivial job and wait for its value, median of batches. Trivial jobs/s:
submit a batch of jobs, one message each where the peer allows it, wait for all. Idle: CPU of
the spawner (its whole process) while it waits 1 s on a job that sleeps 1 s, and the worst of the
workers (their whole processes) over the same second; "-" where it cannot be read.
"""

import os
import resource
import statistics
import time


def double(x):
    """The trivial job, as in cos's report."""
    return 2 * x


def sleep_s(s):
    time.sleep(s)
    return s


def pid_now(_=None):
    """Which worker process runs this (sleeps a little, so a batch of them spreads out)."""
    time.sleep(0.03)
    return os.getpid()


def median_per_op(reps, n, batch):
    """Runs batch(n) once to warm up, then reps times; the median time per operation."""
    batch(max(1, n // 10))
    per = []
    for _ in range(reps):
        t = time.perf_counter()
        batch(n)
        per.append((time.perf_counter() - t) / n)
    return statistics.median(per)


def self_cpu():
    """CPU seconds of this process so far (all its threads; not its children)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    """CPU seconds of process `pid` so far, summed over its threads, in nanoseconds resolution
    (/proc/PID/task/*/schedstat); None when it cannot be read."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total * 1e-9


def descendants(pid=None):
    """The process ids below `pid` (default: this process), from /proc."""
    pid = pid or os.getpid()
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def idle_over(wait, pids):
    """Runs wait() (which should take about 1 s) and returns (spawner %, worst worker %, count):
    the CPU share of this process and of each of `pids` over it."""
    before = {p: proc_cpu(p) for p in pids}
    s0, t0 = self_cpu(), time.perf_counter()
    wait()
    wall = time.perf_counter() - t0
    spawner = 100.0 * (self_cpu() - s0) / wall
    shares = []
    for p, c0 in before.items():
        c1 = proc_cpu(p)
        if c0 is not None and c1 is not None:
            shares.append(100.0 * (c1 - c0) / wall)
    return spawner, (max(shares) if shares else None), len(shares)


def report(name, round_trip, per_job, idle=None, note=""):
    """Prints the peer's line. round_trip, per_job: seconds; idle: (spawner %, worker %, n)."""
    sp = wk = "-"
    if idle is not None:
        sp = f"{idle[0]:.2f}"
        if idle[1] is not None:
            wk = f"{idle[1]:.2f}"
            note = (note + f"; worst of {idle[2]} worker processes").lstrip("; ")
    print(f"PEER {name} | {round_trip:.6e} | {1.0 / per_job:.1f} | {sp} | {wk} | {note}", flush=True)


def quick():
    return os.environ.get("COS_PEERS_QUICK") == "1"
