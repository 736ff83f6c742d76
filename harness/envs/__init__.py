"""Version environments: venvs with other scikit-learn versions, and the preloaded servers
that run the harness's own code inside them (the compat experiment's other side)."""
