"""How a figure is taken: timers and per-phase memory, page-cache eviction, platform methods,
machine fingerprint and calibration, background noise, server processes."""
