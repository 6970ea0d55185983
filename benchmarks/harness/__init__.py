"""Helpers of benchmarks/run.py: processes, peers, targets, load generators and the report.

Not part of rproxy and not imported by it; importable because Python puts the directory of
the script it runs (``benchmarks/``) first on ``sys.path``.
"""
