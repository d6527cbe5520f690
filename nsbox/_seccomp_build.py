"""cffi builder for nsbox._seccomp: the few libseccomp calls that compile a profile (nsbox.seccomp).

A module of its own, not part of nsbox._native: only a container start that finds no
compiled filter in the cache loads libseccomp (docs/security.md, "System calls"); every
other nsbox command, and the spawn child, never do.
"""

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef void *scmp_filter_ctx;
    typedef uint64_t scmp_datum_t;
    enum scmp_compare {
        SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ, ...
    };
    enum scmp_filter_attr { SCMP_FLTATR_CTL_NNP, ... };
    struct scmp_arg_cmp {
        unsigned int arg;
        enum scmp_compare op;
        scmp_datum_t datum_a;
        scmp_datum_t datum_b;
    };
    struct scmp_version {
        unsigned int major;
        unsigned int minor;
        unsigned int micro;
    };
    scmp_filter_ctx seccomp_init(uint32_t def_action);
    void seccomp_release(scmp_filter_ctx ctx);
    int seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
    int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
    uint32_t seccomp_arch_native(void);
    uint32_t seccomp_arch_resolve_name(const char *arch_name);
    int seccomp_syscall_resolve_name(const char *name);
    int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                               unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
    int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
    const struct scmp_version *seccomp_version(void);
    """
)
ffibuilder.set_source(
    "nsbox._seccomp",
    "#include <seccomp.h>",
    libraries=["seccomp"],
    extra_compile_args=["-std=gnu11", "-Wall", "-O2"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(_HERE))
    ffibuilder.compile(verbose=True)
