from setuptools import setup

setup(cffi_modules=["nsbox/_native_build.py:ffibuilder"])
