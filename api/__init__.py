"""The HTTP API: webhooks and widget callbacks in, operator reads and commands. It verifies and
validates each request and turns it into one Temporal call; it keeps no state of its own."""
