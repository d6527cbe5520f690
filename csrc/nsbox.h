/* nsbox native module: the system calls that must happen between clone and
 * exec, plus thin wrappers for the namespace and pidfd calls glibc lacks.
 *
 * No policy lives here: Python decides which mounts, ids and capabilities a
 * container gets and fills a struct nsbox_spawn; C carries the plan out and
 * reports which step failed, with which errno, on which path.
 *
 * Everything between the cdef markers is also fed to cffi's cdef(), so it
 * must stay plain C declarations (no macros, no system types).
 */
#ifndef NSBOX_H
#define NSBOX_H

#include <stdint.h>

/* cdef-begin */
enum nsbox_op_kind {
    NSBOX_OP_MOUNT = 1,
    NSBOX_OP_MKDIR = 2,
    NSBOX_OP_TOUCH = 3,
    NSBOX_OP_SYMLINK = 4,
    NSBOX_OP_PIVOT = 5,
    NSBOX_OP_UMOUNT = 6,
    NSBOX_OP_BIND_BENEATH = 7,  /* bind data (a relative path) of directory source */
    NSBOX_OP_CHDIR = 8,         /* chdir(target): later relative paths start there */
    NSBOX_OP_BIND_IDMAP = 9,    /* bind source at target, idmapped by the user namespace fd */
    NSBOX_OP_CHOWN = 10         /* chown(target, owner, owner) if it is 0:0 */
};

struct nsbox_mount_op {
    int kind;                   /* enum nsbox_op_kind */
    const char *target;
    const char *source;         /* NULL or "" = none */
    const char *fstype;
    const char *data;
    unsigned long flags;        /* mount(2) flags, or umount2(2) flags */
    unsigned int mode;          /* mkdir / touch */
    int optional;               /* ENOENT is not an error */
    const char *root;           /* NULL or "" = target taken as is; else target lies
                                 * below this new root and is resolved inside it
                                 * (openat2 RESOLVE_IN_ROOT): a symbolic link the
                                 * container planted cannot lead out of it */
    int fd;                     /* bind-idmap: the user namespace whose mapping the mount gets */
    unsigned int owner;         /* chown: uid and gid for what the plan made as 0:0 */
};

struct nsbox_join {
    int fd;
    int nstype;                 /* CLONE_NEW* */
};

struct nsbox_spawn {
    const char *const *argv;    /* NULL-terminated */
    const char *const *envp;    /* NULL-terminated */
    const char *const *exec_paths;
    int n_exec_paths;
    const char *cwd;            /* NULL = stay */

    uint64_t clone_flags;       /* CLONE_NEW* for the child */
    const struct nsbox_join *join;
    int n_join;
    int cgroup_fd;              /* cgroup v2 directory, -1 = none */
    const char *const *cgroup_procs;
    int n_cgroup_procs;
    uint64_t unshare_flags;     /* CLONE_NEW* made once in the cgroup (CLONE_NEWCGROUP: rooted there) */

    const struct nsbox_mount_op *ops;
    int n_ops;
    const char *hostname;       /* NULL = keep */

    int set_uid, set_gid, set_groups;
    uint32_t uid, gid;
    const uint32_t *groups;
    int n_groups;

    int set_caps;
    int cap_last;               /* /proc/sys/kernel/cap_last_cap */
    uint64_t cap_bounding, cap_effective, cap_permitted;
    uint64_t cap_inheritable, cap_ambient;
    int no_new_privs;

    int stdio[3];               /* -1 = /dev/null */
    int setsid;
    int ctty;
    int pdeathsig;
    const int *keep_fds;
    int n_keep_fds;
    int init;                   /* stay as a tiny init, fork and exec argv */
    int init_exe_fd;            /* with init: nsbox-init (csrc/init.c), exec'd by fd */
    int new_session_keyring;    /* join a new anonymous session keyring */

    /* A seccomp filter (docs/security.md, "System calls"): a classic BPF
     * program (struct sock_filter[]) compiled by the parent, NULL = none.
     * Installed last before exec with no_new_privs, else before the
     * capabilities drop (loading one needs CAP_SYS_ADMIN then). */
    const void *seccomp_filter;
    int seccomp_len;            /* instructions */
    int userns_fd;              /* user namespace joined after the mounts, -1 = none */
};

enum nsbox_step {
    NSBOX_STEP_NONE = 0,
    NSBOX_STEP_PIPE, NSBOX_STEP_CLONE, NSBOX_STEP_SIGNALS, NSBOX_STEP_SETSID,
    NSBOX_STEP_CTTY, NSBOX_STEP_PDEATHSIG, NSBOX_STEP_CGROUP, NSBOX_STEP_SETNS,
    NSBOX_STEP_HOSTNAME, NSBOX_STEP_MOUNT, NSBOX_STEP_MKDIR, NSBOX_STEP_TOUCH,
    NSBOX_STEP_SYMLINK, NSBOX_STEP_PIVOT_ROOT, NSBOX_STEP_UMOUNT,
    NSBOX_STEP_SETGROUPS, NSBOX_STEP_SETGID, NSBOX_STEP_BOUNDING,
    NSBOX_STEP_KEEPCAPS, NSBOX_STEP_SETUID, NSBOX_STEP_CAPABILITIES,
    NSBOX_STEP_AMBIENT, NSBOX_STEP_NO_NEW_PRIVS, NSBOX_STEP_CHDIR,
    NSBOX_STEP_STDIO, NSBOX_STEP_CLOSE_FDS, NSBOX_STEP_EXEC,
    NSBOX_STEP_FORK, NSBOX_STEP_SETPGID, NSBOX_STEP_KEYRING,
    NSBOX_STEP_SECCOMP
};

/* Written by the child into the error pipe as one record; it stays below
 * PIPE_BUF so the write is atomic. */
struct nsbox_spawn_error {
    int step;                   /* enum nsbox_step */
    int err;                    /* errno */
    char step_name[32];
    char detail[2048];          /* path or name concerned, may be truncated */
};

/* Returns the child's pid, or -1 with *err filled in (the child, if one was
 * started, has been reaped). *pidfd_out is -1 when the kernel gives none.
 * With req->init the child is the init and argv runs in its own child. */
int nsbox_spawn(const struct nsbox_spawn *req, int *pidfd_out,
                struct nsbox_spawn_error *err);

/* Thin wrappers: 0 (or an fd) on success, -errno on failure. */
int nsbox_unshare(int flags);
int nsbox_setns(int fd, int nstype);
int nsbox_mount(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data);
int nsbox_umount2(const char *target, int flags);
int nsbox_pidfd_open(int pid, unsigned int flags);
int nsbox_pidfd_send_signal(int pidfd, int sig);
/* Whether `path` can be mounted idmapped by the user namespace `userns_fd`:
 * an idmapped clone of it is made and dropped, nothing is mounted. */
int nsbox_idmap_probe(const char *path, int userns_fd, int recursive);

/* A sealed (F_SEAL_SEAL|SHRINK|GROW|WRITE), close-on-exec memfd copy of the
 * executable at path, named name: exec'd by fd, no process can write it, not
 * even through /proc/PID/exe. An fd, or -errno. */
int nsbox_sealed_copy(const char *path, const char *name);

/* Empty every capability set (bounding, ambient, inheritable, permitted,
 * effective) and set no_new_privs: a root process that execs afterwards
 * gains nothing. 0 or -errno. */
int nsbox_drop_privileges(int cap_last);

/* malloc_trim(0): hands free heap memory back to the kernel. Returns 1 if
 * memory was released, 0 if not (or if the libc has no malloc_trim). */
int nsbox_malloc_trim(void);
/* cdef-end */

#endif
