"""Running runs: the SQLite store, the runner, the warm worker processes and the jobs they execute."""
