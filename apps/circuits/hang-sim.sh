#!/bin/sh
# A simulator that never ends, for time-limit tests: it starts a child that never ends either,
# writes its own pid and the child's to hang-sim.pids in its working directory, and waits.
# Called like the simulator (`hang-sim.sh [options] NETLIST`); the arguments are ignored.
sleep 1000000 &
echo "$$ $!" >hang-sim.pids
wait
