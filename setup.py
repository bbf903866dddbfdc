"""Build of the one C extension; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

# The audit verifier's hot loop (audit/_native.c). Optional: where it cannot be compiled the
# install goes on and audit.verify uses its Python fast path, which decides the same.
setup(ext_modules=[Extension("audit._native", ["audit/_native.c"], optional=True)])
