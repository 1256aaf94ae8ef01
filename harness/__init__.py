"""dmlbench: a benchmarking harness for deep metric learning losses.

Public entry points: :func:`harness.plugins.method.register_method` / :func:`harness.plugins.method.create_method`
(the method registry), :func:`harness.plugins.data.create_dataset`, :func:`harness.engine.runner.run_trial` (one
trial as a function of a config dict) and the ``python -m harness`` command line.
"""
__version__ = "0.1.0"
