# Sourced by cluster/netns/check.sh and cluster/bench/data-parallel.sh: the simulated network.
#
# netns_build [HOOK] makes one switch namespace $sw (a bridge, br0) and, for each name h in hosts[], a
# host namespace $tag-$h joined to it by a veth pair created in place (eth0 inside the host, port-$h on
# the switch; never in the machine's own namespace), addressed ${addr[$h]}/24. HOOK, if given, is called
# as HOOK NAMESPACE HOST once each host is up (the benchmark shapes its links there).
netns_build() {
  local hook=${1:-} h ns
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for h in "${hosts[@]}"; do
    ns=$tag-$h
    ip netns add "$ns"
    ip link add eth0 netns "$ns" type veth peer name "port-$h" netns "$sw"
    ip -n "$sw" link set "port-$h" master br0 up
    ip -n "$ns" addr add "${addr[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if [ -n "$hook" ]; then "$hook" "$ns" "$h"; fi
  done
}
