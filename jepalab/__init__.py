"""jepalab: Joint-Embedding Predictive Architectures — train, measure and plan with them."""

__version__ = "0.1.0"
