"""Runs: Run, the Hub and open_hub, drain tasks, keys, retention, remote runs, timers, config."""
