"""Latency benchmarking: every backend, interleaved, with percentiles, noise, memory and the roofline.

Imports here stay light (no torch) so the CLI can import the config types fast.
"""

from dlopt.bench.config import Backend, BenchConfig, Device, StopReason

__all__ = ["Backend", "BenchConfig", "Device", "StopReason"]
