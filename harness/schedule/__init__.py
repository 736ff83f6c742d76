"""How cells are scheduled: the runner (plan -> isolated children -> results file), what runs
inside a child, the forkserver's preload, run profiles, and the entry points the asv and
pytest-benchmark fronts call."""
