"""Build script for the one thing setup.cfg cannot declare: the optional C accelerator.

``p2pchain/_canonical.c`` speeds up ``p2pchain.encoding`` (docs/performance.md). It is
``optional``: without a C compiler or Python's headers the install still succeeds, with a
warning, and ``p2pchain.encoding`` uses its pure-Python path (same bytes, slower).
Metadata, dependencies and the console script stay in setup.cfg.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("p2pchain._canonical", ["p2pchain/_canonical.c"], optional=True),
    ],
)
