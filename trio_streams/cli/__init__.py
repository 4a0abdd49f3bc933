"""The trio-streams command: main, serve (on Hypercorn; also embeddable as ``serve()``) and its plan, units."""
