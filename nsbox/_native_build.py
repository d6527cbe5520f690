"""cffi builder for nsbox._native (API mode, out-of-line), run at install time.

The declarations come from csrc/nsbox.h (between its cdef markers) so the C
header stays the single description of the interface.
"""

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_CSRC = os.path.join(os.path.dirname(_HERE), "csrc")

# Kernel constants re-exported by nsbox.native; values come from the system
# headers at compile time.
CONSTANTS = [
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWNET",
    "CLONE_NEWIPC",
    "CLONE_NEWUTS",
    "CLONE_NEWCGROUP",
    "CLONE_NEWUSER",
    "MS_RDONLY",
    "MS_NOSUID",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_REMOUNT",
    "MS_BIND",
    "MS_REC",
    "MS_PRIVATE",
    "MS_SLAVE",
    "MS_SHARED",
    "MS_STRICTATIME",
    "MS_RELATIME",
    "MNT_DETACH",
]


def _cdef() -> str:
    with open(os.path.join(_CSRC, "nsbox.h")) as f:
        header = f.read()
    body = header.split("/* cdef-begin */")[1].split("/* cdef-end */")[0]
    return body + "".join(f"#define {name} ...\n" for name in CONSTANTS)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "nsbox._native",
    """
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE
    #endif
    #include <sched.h>
    #include <sys/mount.h>
    #include "nsbox.h"
    """,
    # Relative to the project root, where setuptools runs the build.
    sources=["csrc/nsbox.c"],
    depends=["csrc/nsbox.h"],  # rebuild on change; ship it in an sdist
    include_dirs=["csrc"],
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-O2"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(_HERE))
    ffibuilder.compile(verbose=True)
