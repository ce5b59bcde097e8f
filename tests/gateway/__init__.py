"""A real Smithers Gateway for end-to-end tests: installer, process helper, pytest fixtures."""
