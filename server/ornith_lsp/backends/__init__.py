"""Model servers: what the machine can run (planner), and keeping it running (supervisor)."""
