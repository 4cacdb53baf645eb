#!/usr/bin/env bash
# A two-host cluster on one Linux machine, for CI and for trying cos's MPI machine across hosts.
#
# Usage:
#   cluster/two-hosts.sh [OPTIONS] run [-n N] -- PROGRAM [ARGS...]
#       mpirun -n N (default 4) PROGRAM on host cos-a, with a hostfile naming cos-a and cos-b
#       (--slots ranks each, filled in order: with the defaults ranks 0 and 1 run on cos-a,
#       2 and 3 on cos-b).
#   cluster/two-hosts.sh [OPTIONS] exec -- COMMAND [ARGS...]
#       COMMAND on host cos-a; "$COS_TWO_HOSTS_MPIRUN" is mpirun with the cluster's options
#       (add -n and the program), "$COS_TWO_HOSTS_AGENT" HOST 'command line' runs a command on
#       a host, "$COS_TWO_HOSTS_HOSTFILE" is the hostfile.
#   cluster/two-hosts.sh [OPTIONS] check
#       builds the cluster, checks it (hostnames, link, shared directory) and removes it.
#
# Options:
#   --no-ngspice HOST   hide ngspice on HOST (cos-a, cos-b, or a, b): an overlay mount inside
#                       that host's mount namespace whites it out of the directory that holds it,
#                       so it is on neither that host's PATH nor its file system.
#                       Also COS_TWO_HOSTS_NO_NGSPICE=HOST.
#   --slots N           MPI slots per host in the hostfile (default 2).
#   --shared-tmp        keep the machine's /tmp on both hosts (by default each host has its own
#                       empty /tmp, as nodes do; a program under /tmp then needs this option).
#
# What it builds, all of it removed on exit (also on failure or interrupt):
#   - two long-lived holder processes, each in its own network, UTS and mount namespace
#     (unshare); the hosts are those namespaces, named cos-a and cos-b (hostname);
#   - a veth pair with one end in each network namespace (cos0, 10.77.0.1/24 on cos-a,
#     10.77.0.2/24 on cos-b): nothing is added to the machine's own network namespace, so the
#     cluster's traffic stays inside it;
#   - in each mount namespace (private propagation, so nothing leaks to the machine): an
#     /etc/hosts naming both hosts, a private /tmp, a scratch directory (tmpfs, the same path on
#     both hosts, different contents: PARALLEL_LOCAL_STORAGE), and the shared directory bind
#     mounted at a path that differs per host (PARALLEL_MIRRORED_STORAGE), the other host's path
#     being an empty directory there;
#   - OpenMPI starting the remote daemon through cluster/ns-agent.sh (nsenter into the other
#     host's namespaces, with that host's environment) instead of ssh; TCP only, on the link.
#
# Exit status: the command's own status; 2 for a usage error; 76 when processes were left in the
# hosts after the command ended (they are listed, then killed); 77 when this machine refuses to
# build the cluster (namespaces, the veth link or the mounts; the error is printed) so that CI
# can report it and go on.
set -euo pipefail

readonly EXIT_USAGE=2
readonly EXIT_LEFTOVER=76
readonly EXIT_REFUSED=77
readonly HOSTS=(cos-a cos-b)
readonly NET=10.77.0
readonly SUBNET=$NET.0/24

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent=$here/ns-agent.sh

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit "$EXIT_USAGE"
}
say() { echo "two-hosts: $*" >&2; }
refused() {
  say "REFUSED: $*"
  say "this machine does not allow the two-host cluster (exit $EXIT_REFUSED)"
  exit "$EXIT_REFUSED"
}

host_name() {
  case $1 in
    a | cos-a) echo cos-a ;;
    b | cos-b) echo cos-b ;;
    *) say "no host $1 (cos-a or cos-b)"; exit "$EXIT_USAGE" ;;
  esac
}

# --- Arguments ------------------------------------------------------------------------------
no_ngspice=${COS_TWO_HOSTS_NO_NGSPICE:-}
slots=2
shared_tmp=0
np=4
mode=
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-ngspice) [[ $# -ge 2 ]] || usage; no_ngspice=$2; shift 2 ;;
    --slots) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; slots=$2; shift 2 ;;
    --shared-tmp) shared_tmp=1; shift ;;
    -n | -np) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; np=$2; shift 2 ;;
    run | exec | check) [[ -z $mode ]] || usage; mode=$1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) say "unknown argument $1"; usage ;;
  esac
done
[[ -n $mode ]] || usage
if [[ $mode == check ]]; then
  [[ $# -eq 0 ]] || usage
elif [[ $# -eq 0 ]]; then
  usage
fi
[[ -z $no_ngspice ]] || no_ngspice=$(host_name "$no_ngspice")
# A private /tmp would hide a program or working directory that lives under /tmp.
if [[ $shared_tmp == 0 && $# -gt 0 ]]; then
  for p in "$PWD" "$(command -v "$1" 2>/dev/null || true)"; do
    case $(readlink -f "$p" 2>/dev/null || echo "$p") in
      /tmp | /tmp/*)
        say "$p is under /tmp: both hosts keep the machine's /tmp (--shared-tmp)"
        shared_tmp=1
        ;;
    esac
  done
fi
if [[ $(id -u) -ne 0 ]]; then
  refused "needs root (namespaces, veth, mounts); running as uid $(id -u)"
fi
for tool in unshare nsenter ip mount; do
  command -v "$tool" >/dev/null || refused "$tool is not installed (apt-get install util-linux iproute2 mount)"
done
if [[ $mode != check ]]; then
  command -v mpirun >/dev/null || { say "mpirun is not installed (apt-get install openmpi-bin)"; exit "$EXIT_USAGE"; }
fi

# --- State and cleanup ----------------------------------------------------------------------
# Not under /tmp: each host gets its own /tmp, and the state must be visible on both.
state_root=/run
[[ -w $state_root ]] || state_root=/var/tmp
# What a run killed by SIGKILL left behind (its script and holders are gone): remove it. A
# directory younger than a minute may be another run's that is still starting.
for old in "$state_root"/cos-two-hosts.*; do
  [[ -d $old && -z $(find "$old" -maxdepth 0 -mmin -1) ]] || continue
  live=0
  for pidfile in "$old"/owner "$old"/hosts/*/pid; do
    [[ -r $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null && live=1
  done
  [[ $live == 1 ]] || rm -rf --one-file-system "$old"
done
state=$(mktemp -d "$state_root/cos-two-hosts.XXXXXX")
echo "$$" >"$state/owner"
declare -A holder=()

# Processes in one of the hosts' namespaces, other than the holders.
processes_in_hosts() {
  local -A ours=() skip=()
  local h p ns kind
  for h in "${!holder[@]}"; do
    skip[${holder[$h]}]=1
    for kind in net uts mnt; do
      ns=$(readlink "/proc/${holder[$h]}/ns/$kind" 2>/dev/null) && ours[$ns]=1
    done
  done
  [[ ${#ours[@]} -gt 0 ]] || return 0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ -z ${skip[$p]:-} && $p != "$$" && $p != "$BASHPID" ]] || continue
    for kind in net uts mnt; do
      ns=$(readlink "/proc/$p/ns/$kind" 2>/dev/null) || continue
      if [[ -n ${ours[$ns]:-} ]]; then
        echo "$p"
        break
      fi
    done
  done
}

cleanup() {
  local rc=$? pids h
  trap - EXIT INT TERM
  # What still runs on the hosts gets a TERM, then, after up to 2 s, a KILL.
  pids=$(processes_in_hosts | tr '\n' ' ')
  if [[ -n ${pids// /} ]]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 40); do
      pids=$(processes_in_hosts | tr '\n' ' ')
      [[ -n ${pids// /} ]] || break
      sleep 0.05
    done
    # shellcheck disable=SC2086
    [[ -z ${pids// /} ]] || kill -KILL $pids 2>/dev/null || true
  fi
  for h in "${!holder[@]}"; do
    kill -KILL "${holder[$h]}" 2>/dev/null || true
    wait "${holder[$h]}" 2>/dev/null || true
  done
  # The mounts lived only in the hosts' (now ended) mount namespaces: what is left here is a
  # plain directory tree.
  rm -rf --one-file-system "$state"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command inside host $1's namespaces (as root, for the setup).
in_host() {
  local h=$1
  shift
  nsenter --target "${holder[$h]}" --net --uts --mount -- "$@"
}

# --- The hosts ------------------------------------------------------------------------------
share=$state/share
mkdir -p "$share" "$state/scratch" "$state/view"
printf '127.0.0.1\tlocalhost\n%s.1\tcos-a\n%s.2\tcos-b\n' "$NET" "$NET" >"$state/etc-hosts"

deathsig=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  deathsig=(setpriv --pdeathsig KILL)
fi
for h in "${HOSTS[@]}"; do
  mkdir -p "$state/hosts/$h" "$state/view/$h/share"
  # The holder keeps the host's namespaces alive; unshare without --fork execs sleep in them.
  # It dies with this script even when the script is killed by SIGKILL (no trap runs then).
  "${deathsig[@]}" unshare --net --uts --mount --propagation private sleep infinity \
    2>"$state/hosts/$h/unshare.err" &
  holder[$h]=$!
  echo "${holder[$h]}" >"$state/hosts/$h/pid"
done
# Wait until both holders are in their own namespaces (or have failed).
self_uts=$(readlink /proc/self/ns/uts)
for h in "${HOSTS[@]}"; do
  for _ in $(seq 1 500); do
    if ! kill -0 "${holder[$h]}" 2>/dev/null; then
      refused "unshare --net --uts --mount: $(cat "$state/hosts/$h/unshare.err")"
    fi
    uts=$(readlink "/proc/${holder[$h]}/ns/uts" 2>/dev/null || true)
    [[ -z $uts || $uts == "$self_uts" ]] || break
    sleep 0.01
  done
  [[ -n $uts && $uts != "$self_uts" ]] || refused "unshare did not enter new namespaces for $h"
done

# The link: both ends created directly in the hosts' network namespaces.
if ! err=$(ip link add cos0 netns "${holder[cos-a]}" type veth peer name cos0 netns "${holder[cos-b]}" 2>&1); then
  refused "ip link add (veth): $err"
fi

ngspice_path=$(command -v ngspice 2>/dev/null || true)
i=1
for h in "${HOSTS[@]}"; do
  view=$state/view/$h/share
  setup=(
    "hostname $h"
    "ip link set lo up"
    "ip addr add $NET.$i/24 dev cos0"
    "ip link set cos0 up"
    "mount --bind $state/etc-hosts /etc/hosts"
    "mount -t tmpfs -o mode=0755 cos-scratch-$h $state/scratch"
    "mount --bind $share $view"
  )
  [[ $shared_tmp == 1 ]] || setup+=("mount -t tmpfs -o mode=1777 cos-tmp-$h /tmp")
  for step in "${setup[@]}"; do
    # shellcheck disable=SC2086
    err=$(in_host "$h" $step 2>&1) || refused "on $h: $step: $err"
  done
  if [[ $no_ngspice == "$h" ]]; then
    if [[ -z $ngspice_path ]]; then
      say "ngspice is not installed: nothing to hide on $h"
    else
      # A whiteout (character device 0:0) in an upper layer hides the file of the lower one.
      bindir=$(dirname "$(readlink -f "$ngspice_path")")
      mkdir -p "$state/hosts/$h/hide"
      mknod "$state/hosts/$h/hide/$(basename "$ngspice_path")" c 0 0
      step="mount -t overlay cos-hide-$h -o lowerdir=$state/hosts/$h/hide:$bindir $bindir"
      # shellcheck disable=SC2086
      err=$(in_host "$h" $step 2>&1) || refused "on $h: hiding ngspice: $step: $err"
      if in_host "$h" sh -c 'command -v ngspice' >/dev/null 2>&1; then
        say "ngspice still found on $h after hiding it"
        exit 1
      fi
      say "ngspice hidden on $h"
    fi
  fi
  i=$((i + 1))
done

# Each host's environment: the caller's, with the host's own storage settings.
for h in "${HOSTS[@]}"; do
  {
    env -0 -u PARALLEL_MIRRORED_STORAGE -u PARALLEL_LOCAL_STORAGE -u HOSTNAME
    printf '%s\0' "HOSTNAME=$h" \
      "PARALLEL_MIRRORED_STORAGE=$state/view/$h/share" \
      "PARALLEL_LOCAL_STORAGE=$state/scratch" \
      "COS_TWO_HOSTS_STATE=$state" \
      "COS_TWO_HOSTS_SHARE=$state/view/$h/share" \
      "COS_TWO_HOSTS_AGENT=$agent" \
      "COS_TWO_HOSTS_HOSTFILE=$state/hostfile" \
      "COS_TWO_HOSTS_MPIRUN=$state/mpirun" \
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  } >"$state/hosts/$h/env"
done

# Checks: each host has its name, reaches the other by name over the link, and sees the share
# at its own path only.
for h in "${HOSTS[@]}"; do
  got=$(in_host "$h" hostname)
  [[ $got == "$h" ]] || { say "host $h calls itself $got"; exit 1; }
done
echo "written on cos-a" | in_host cos-a sh -c "cat > $state/view/cos-a/share/.probe"
got=$(in_host cos-b cat "$state/view/cos-b/share/.probe")
[[ $got == "written on cos-a" ]] || { say "the share does not reach cos-b"; exit 1; }
if in_host cos-b test -e "$state/view/cos-a/share/.probe"; then
  say "cos-a's share path exists on cos-b: the paths would need no translation"
  exit 1
fi
rm -f "$share/.probe"
addr=$(in_host cos-b getent hosts cos-a | awk '{print $1}')
[[ $addr == "$NET.1" ]] || { say "cos-a resolves to '$addr' on cos-b"; exit 1; }
say "hosts cos-a (${holder[cos-a]}) and cos-b (${holder[cos-b]}) up; share at $state/view/cos-a/share on cos-a, $state/view/cos-b/share on cos-b"

# --- OpenMPI --------------------------------------------------------------------------------
for h in "${HOSTS[@]}"; do echo "$h slots=$slots"; done >"$state/hostfile"
version=$(mpirun --version 2>/dev/null | sed -n 's/.*(Open MPI) \([0-9][0-9.]*\).*/\1/p' | head -n1 || true)
case $version in
  "" | [1-4].*)
    # ORTE (Open MPI up to 4.x): the rsh launcher and the out-of-band channel are ORTE's.
    launcher=(--mca plm_rsh_agent "$agent" --mca oob_tcp_if_include "$SUBNET")
    ;;
  *)
    # PRRTE (Open MPI 5 and later): the same settings under PRRTE's names.
    launcher=(--prtemca plm_ssh_agent "$agent" --prtemca oob_tcp_if_include "$SUBNET")
    ;;
esac
{
  echo '#!/bin/sh'
  echo "# mpirun for the two-host cluster in $state (Open MPI ${version:-unknown})"
  printf 'exec mpirun --hostfile %q --oversubscribe' "$state/hostfile"
  printf ' %q' "${launcher[@]}" --mca btl tcp,self --mca btl_tcp_if_include "$SUBNET"
  echo ' "$@"'
} >"$state/mpirun"
chmod +x "$state/mpirun"

# --- The command ----------------------------------------------------------------------------
mapfile -d '' env_a <"$state/hosts/cos-a/env"
case $mode in
  check) command=() ;;
  run) command=("$state/mpirun" -n "$np" "$@") ;;
  exec) command=("$@") ;;
esac
status=0
if [[ ${#command[@]} -gt 0 ]]; then
  # In the background, so that a signal to this script is handled at once (bash runs traps only
  # between foreground commands); the explicit redirection keeps the caller's standard input.
  # A TERM reaches the command (mpirun ends its job) even when this script dies by SIGKILL.
  nsenter --target "${holder[cos-a]}" --net --uts --mount --wd="$PWD" -- \
    "${deathsig[@]/KILL/TERM}" env -i "${env_a[@]}" "${command[@]}" <&0 &
  command_pid=$!
  wait "$command_pid" || status=$?
fi

# Nothing the command started may outlive it on either host.
left=
for _ in $(seq 1 100); do
  left=$(processes_in_hosts | paste -sd, -)
  [[ -n $left ]] || break
  sleep 0.05
done
if [[ -n $left ]]; then
  say "processes left on the hosts after the command ended:"
  ps -o pid,ppid,args -p "$left" >&2 || true
  [[ $status -ne 0 ]] || status=$EXIT_LEFTOVER
else
  say "no process left on either host"
fi
exit "$status"
