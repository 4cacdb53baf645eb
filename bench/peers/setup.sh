#!/usr/bin/env bash
# Installs what the peer measurements need into a venv of their own (PyPI only):
# mpi4py (built against the system's OpenMPI), greenlet and PyOPUS 0.9 (for its MPI machine),
# Dask's distributed scheduler and Ray. Each package is tried on its own, so one that does not
# install here leaves the others usable; bench/peers/run_all.sh then reports it as not installed.
#
#   bench/peers/setup.sh            # venv in $COS_PEERS_VENV, default /tmp/cos-peers-venv
set -uo pipefail
venv="${COS_PEERS_VENV:-/tmp/cos-peers-venv}"
py="${PYTHON:-python3}"

if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
  echo "setup: no mpirun/mpicc; as root: apt-get update && apt-get install -y libopenmpi-dev openmpi-bin python3-venv python3-dev" >&2
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || exit 1
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip >/dev/null 2>&1 || true
# PyOPUS 0.9 builds with an old setuptools and runs its cooperative scheduler on greenlet.
"$pip" install -q "setuptools<70" wheel greenlet numpy || echo "setup: base packages failed" >&2
"$pip" install -q mpi4py || echo "setup: mpi4py did not install" >&2
"$pip" install -q "dask[distributed]" || echo "setup: dask did not install" >&2
"$pip" install -q "ray" || echo "setup: ray did not install" >&2

# PyOPUS: the source distribution only (its C extensions are not needed by pyopus.parallel).
src="$venv/src"
if [ ! -d "$src/PyOPUS-0.9" ]; then
  mkdir -p "$src"
  if "$pip" download -q --no-deps --no-build-isolation pyopus==0.9 -d "$src"; then
    tar xzf "$src/PyOPUS-0.9.tar.gz" -C "$src"
  else
    echo "setup: pyopus 0.9 could not be downloaded" >&2
  fi
fi
echo "setup: venv $venv"
"$venv/bin/python" - <<'PY'
import importlib
for name in ["mpi4py", "greenlet", "dask", "distributed", "ray"]:
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"  {name}: not importable ({type(e).__name__}: {e})")
PY
