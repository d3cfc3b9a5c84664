"""How a kernel is confined: the launch under bubblewrap, the seccomp filter, cgroup and rlimit
limits, host uids, working directories and the fork-server for Python kernels."""
