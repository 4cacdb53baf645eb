#!/usr/bin/env bash
# OpenMPI's launcher agent for two-hosts.sh, in place of ssh: OpenMPI calls it as
#   ns-agent.sh [ssh-style options] HOST COMMAND...
# and it runs COMMAND (a shell command line, as ssh would pass it to the remote shell) inside
# HOST's network, UTS and mount namespaces, with HOST's own environment (as a login on that node
# would have it), not the environment of the mpirun that called it.
set -euo pipefail

state=${COS_TWO_HOSTS_STATE:?ns-agent.sh: COS_TWO_HOSTS_STATE is not set (run it through two-hosts.sh)}
# OpenMPI passes no options to an agent that is not ssh or rsh; skip any anyway.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
if [[ $# -lt 2 ]]; then
  echo "ns-agent.sh: usage: ns-agent.sh HOST COMMAND..." >&2
  exit 255
fi
host=$1
shift
dir=$state/hosts/$host
if [[ ! -r $dir/pid || ! -r $dir/env ]]; then
  echo "ns-agent.sh: no host named $host in $state/hosts" >&2
  exit 255
fi
pid=$(<"$dir/pid")
# The host's environment, NUL-separated NAME=VALUE entries.
mapfile -d '' environment <"$dir/env"
exec nsenter --target "$pid" --net --uts --mount -- env -i "${environment[@]}" /bin/sh -c "$*"
