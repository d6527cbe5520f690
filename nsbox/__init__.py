"""nsbox: Kubernetes-style pods on one Linux machine, without images or a daemon."""

__version__ = "0.1.0"
