"""Training and evaluation: ``import harness.engine`` registers the engine's optional metrics."""
from harness.engine import utilization  # noqa: F401  (registers the optional metric "utilization")
