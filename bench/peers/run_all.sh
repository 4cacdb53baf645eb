#!/usr/bin/env bash
# Measures the peers a user would pick instead of cos, each the same way (one job's round trip,
# trivial jobs/s, idle CPU of spawner and workers over a 1 s wait), and prints markdown rows to
# paste next to bench_report's table. rayon, the Rust peer, is measured by bench_report itself.
#
#   bench/peers/run_all.sh            # full; COS_PEERS_QUICK=1 for short batches
#
# Installs what it needs into a venv first (bench/peers/setup.sh; PyPI only). Not run in CI.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${COS_PEERS_VENV:-/tmp/cos-peers-venv}"
py="$venv/bin/python"
[ -x "$py" ] || "$here/setup.sh" >&2
ranks="${COS_PEERS_RANKS:-3}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 COS_PEERS_QUICK="${COS_PEERS_QUICK:-0}"
export PYTHONPATH="$here:$venv/src/PyOPUS-0.9${PYTHONPATH:+:$PYTHONPATH}"
mpi=(mpirun --oversubscribe -n "$ranks" -x PYTHONPATH -x COS_PEERS_QUICK)

out="$(mktemp)"
run() { # name, command...
  local name="$1"; shift
  echo "peers: $name" >&2
  if ! (cd "$here" && timeout 600 "$@") >"$out.one" 2>"$out.err"; then
    echo "PEER $name | - | - | - | - | did not run here: $(tail -n 1 "$out.err" | cut -c1-160)" >>"$out"
  elif ! grep '^PEER ' "$out.one" >>"$out"; then
    echo "PEER $name | - | - | - | - | printed no result" >>"$out"
  fi
}
echo "peers: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start" >&2
run "ProcessPoolExecutor" "$py" ppe.py
run "mpi4py.futures" "${mpi[@]}" "$py" -m mpi4py.futures mpi4py_futures.py
run "PyOPUS MPI" "${mpi[@]}" "$py" pyopus_mpi.py
run "Dask" "$py" dask_peer.py
run "Ray" "$py" ray_peer.py

echo
echo "Peers, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end:"
echo
echo "| peer | one job's round trip | trivial jobs/s | spawner CPU, waiting 1 s | worst worker CPU, same second | note |"
echo "|---|---|---|---|---|---|"
"$py" - "$out" <<'PY'
import sys
def t(s):
    try:
        v = float(s)
    except ValueError:
        return s
    return f"{v*1e9:.0f} ns" if v < 1e-6 else f"{v*1e6:.1f} µs" if v < 1e-3 else f"{v*1e3:.2f} ms"
def r(s):
    try:
        v = float(s)
    except ValueError:
        return s
    return f"{v/1e6:.2f} M/s" if v >= 1e6 else f"{v/1e3:.1f} k/s" if v >= 1e3 else f"{v:.0f} /s"
def p(s):
    return s if s == "-" else f"{s} %"
for line in open(sys.argv[1]):
    f = [x.strip() for x in line[len("PEER "):].split("|")]
    if len(f) == 6:
        print(f"| {f[0]} | {t(f[1])} | {r(f[2])} | {p(f[3])} | {p(f[4])} | {f[5]} |")
PY
rm -f "$out" "$out.one" "$out.err"
