"""kaic: the Kubernetes AI Conformance toolkit."""

# NOTE: the one place the version is written (pyproject.toml reads it from here);
# a literal, because importlib.metadata alone costs more than half of a 150 ms start-up.
__version__ = "0.1.0"
