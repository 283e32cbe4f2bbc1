"""Build script for the one thing setup.cfg cannot declare: the optional C accelerators.

``p2pchain/_canonical.c`` speeds up ``p2pchain.encoding`` and ``p2pchain/_smt.c`` the state
tree's update (``p2pchain.ledger.smt``; docs/performance.md). Each is
``optional``: without a C compiler or Python's headers the install still succeeds, with a
warning, and each module uses its pure-Python path (same bytes, slower).
Metadata, dependencies and the console script stay in setup.cfg.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("p2pchain._canonical", ["p2pchain/_canonical.c"], optional=True),
        Extension("p2pchain._smt", ["p2pchain/_smt.c"], optional=True),
    ],
)
