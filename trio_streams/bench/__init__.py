"""The load generator behind trio-streams bench, with its HTTP client and statistics."""
