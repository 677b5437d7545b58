#!/bin/bash
# Start an inner dockerd in a container that has the capabilities but not --privileged (this host
# cannot grant CAP_SYS_RESOURCE, so --privileged does not start). docker mounts /sys and the cgroup
# hierarchies read-only then, and dockerd must write to them (the cgroups of its own containers).
# /sys remounts read-write; a cgroup v1 hierarchy does not ("mount point is busy"), so each is mounted
# afresh and this container's own cgroup of it bound back in its place: the inner engine sees - and
# nests its containers under - exactly the subtree it saw before, now writable, and the host engine
# removes that subtree with the container. Extra arguments go to dockerd (ops/swarm/nodes.py passes
# the socket it shares with the host).
set -euo pipefail
mount -o remount,rw /sys
while read -r _ mnt type opts _; do
  case $type in
    cgroup2) mount -o remount,rw "$mnt" ;;
    cgroup)
      ctrl=$(tr , '\n' <<<"$opts" | grep -vxE 'ro|rw|nosuid|nodev|noexec|relatime' | paste -sd,)
      own=$(awk -F: -v c="$ctrl" '$2 == c {print $3}' /proc/self/cgroup)
      root=/run/cgroup-root/${mnt##*/}
      mkdir -p "$root"
      mount -t cgroup -o "$ctrl" cgroup "$root"
      umount "$mnt"
      mount --bind "$root$own" "$mnt"
      ;;
  esac
done < <(awk '$3 == "cgroup" || $3 == "cgroup2"' /proc/mounts)
exec dockerd --host unix:///var/run/docker.sock "$@"
