"""Build the Cython parser unless SIPCORE_NO_EXTENSIONS=1 (pure-Python install)."""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("SIPCORE_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("sipcore.message._cparser", ["csrc/_cparser.pyx"], extra_compile_args=["-O2"])],
        include_path=["csrc"],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
