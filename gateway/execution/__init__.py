"""Kernels running code: one kernel's connection, the warm pools per language, readiness."""
