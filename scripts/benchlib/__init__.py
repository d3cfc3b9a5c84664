"""What the scripts share: processes and measurements (procs, stats, workload), an in-process
gateway (embedded), a local cluster (cluster) and a scripted model provider (sse_replay).

The scripts are a package run from the repository root: ``python -m scripts.bench``."""
