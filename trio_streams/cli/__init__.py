"""The trio-streams command: main, serve (workers, Hypercorn) and its plan, units."""
