"""designers."""
