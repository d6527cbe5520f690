import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExtAndInit(build_ext):
    """Also build nsbox-init (csrc/init.c), an executable installed beside the package.

    It is the tiny init of `run --init` and the pause of a shared PID namespace:
    nsbox execs it so that those processes are small programs, not copies of a
    Python watcher. (cffi builds nsbox._native through this same command.)
    """

    def run(self) -> None:
        super().run()
        out = "nsbox" if self.inplace else os.path.join(self.build_lib, "nsbox")
        objects = self.compiler.compile(["csrc/init.c"], output_dir=self.build_temp,
                                        extra_postargs=["-std=gnu11", "-Wall", "-Wextra", "-O2"])
        self.compiler.link_executable(objects, "nsbox-init", output_dir=out)


setup(cffi_modules=["nsbox/_native_build.py:ffibuilder"],
      cmdclass={"build_ext": BuildExtAndInit})
