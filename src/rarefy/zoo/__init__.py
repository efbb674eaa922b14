"""The model zoo: pluggable event-level backends (see :mod:`rarefy.zoo.base`)."""
