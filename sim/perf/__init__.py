"""The performance model: cycles, SRAM, traffic and energy without RTL (docs/PERF_MODEL.md)."""
