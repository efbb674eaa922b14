"""Run-directory workflows: each job reads a config, does its stage's work and writes a run directory.

The CLI's commands are thin wrappers over these functions.
"""
