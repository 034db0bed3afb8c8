"""SSL methods: small registered recipes over pure losses (see :mod:`eossl.methods.base`)."""

from eossl.methods import jepa, joint, mae, momentum, pretext  # noqa: F401  (registers the methods)
from eossl.methods.base import METHODS, Method, build_method, method_parameters

__all__ = ["METHODS", "Method", "build_method", "method_parameters"]
