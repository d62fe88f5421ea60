"""Meta-learning offline: the matrix of configurations x tasks and the portfolio mined from it."""
