import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExtAndPrograms(build_ext):
    """Also build the executables installed beside the package (PROGRAMS).

    nsbox execs them so that processes that only wait are small programs, not
    copies of a Python watcher: nsbox-init is the tiny init of `run --init` and
    the pause of a shared PID namespace; nsbox-idle is a pod's watcher while
    nothing happens. (cffi builds nsbox._native through this same command.)
    """

    PROGRAMS = {"nsbox-init": "csrc/init.c", "nsbox-idle": "csrc/idle.c"}

    def run(self) -> None:
        super().run()
        out = "nsbox" if self.inplace else os.path.join(self.build_lib, "nsbox")
        for name, source in self.PROGRAMS.items():
            objects = self.compiler.compile(
                [source], output_dir=self.build_temp, extra_postargs=["-std=gnu11", "-Wall", "-Wextra", "-O2"]
            )
            self.compiler.link_executable(objects, name, output_dir=out)


setup(
    cffi_modules=["nsbox/_native_build.py:ffibuilder", "nsbox/_seccomp_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtAndPrograms},
)
