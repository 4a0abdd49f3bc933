"""The Durable Streams store on Redis: connection, layout, data, notifications."""
