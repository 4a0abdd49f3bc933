"""The trio-streams command: main, serve (on Hypercorn; embeddable as ``serve()``), its plan, units."""
