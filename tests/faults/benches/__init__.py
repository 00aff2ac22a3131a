"""Tiny benches that misbehave on purpose, for the isolation test of `citypack bench`."""
