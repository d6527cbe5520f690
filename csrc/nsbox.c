/* nsbox native spawn path: clone a child, carry out a prepared plan in it
 * (cgroup, setns, mounts, ids, capabilities, stdio) and exec, or stay as a
 * tiny init that runs the command in a child of its own.
 *
 * After clone the child only makes async-signal-safe calls and never
 * allocates: every string was prepared by the parent. A failing step is
 * reported to the parent as one struct nsbox_spawn_error written into a
 * close-on-exec pipe; EOF on that pipe means execve succeeded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "nsbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/memfd.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_T_SYMLINKS
#define MOVE_MOUNT_T_SYMLINKS 0x00000010
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif

/* The kernel's struct mount_attr (Linux 5.12). */
struct idmap_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

/* The kernel's struct clone_args, spelled out because libc headers may lack
 * it. The size passed to clone3 tells the kernel which fields we use. */
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
    uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#define CLONE_ARGS_SIZE_VER0 64     /* up to tls */
#define CLONE_ARGS_SIZE_VER2 88     /* with cgroup (Linux 5.7) */

static const char *const step_names[] = {
    [NSBOX_STEP_NONE] = "none", [NSBOX_STEP_PIPE] = "pipe",
    [NSBOX_STEP_CLONE] = "clone", [NSBOX_STEP_SIGNALS] = "signals",
    [NSBOX_STEP_SETSID] = "setsid", [NSBOX_STEP_CTTY] = "ctty",
    [NSBOX_STEP_PDEATHSIG] = "pdeathsig", [NSBOX_STEP_CGROUP] = "cgroup",
    [NSBOX_STEP_SETNS] = "setns", [NSBOX_STEP_HOSTNAME] = "hostname",
    [NSBOX_STEP_MOUNT] = "mount", [NSBOX_STEP_MKDIR] = "mkdir",
    [NSBOX_STEP_TOUCH] = "touch", [NSBOX_STEP_SYMLINK] = "symlink",
    [NSBOX_STEP_PIVOT_ROOT] = "pivot_root", [NSBOX_STEP_UMOUNT] = "umount",
    [NSBOX_STEP_SETGROUPS] = "setgroups", [NSBOX_STEP_SETGID] = "setgid",
    [NSBOX_STEP_BOUNDING] = "capabilities", [NSBOX_STEP_KEEPCAPS] = "capabilities",
    [NSBOX_STEP_SETUID] = "setuid", [NSBOX_STEP_CAPABILITIES] = "capabilities",
    [NSBOX_STEP_AMBIENT] = "capabilities", [NSBOX_STEP_NO_NEW_PRIVS] = "no_new_privs",
    [NSBOX_STEP_CHDIR] = "chdir", [NSBOX_STEP_STDIO] = "stdio",
    [NSBOX_STEP_CLOSE_FDS] = "close_fds", [NSBOX_STEP_EXEC] = "exec",
    [NSBOX_STEP_FORK] = "fork", [NSBOX_STEP_SETPGID] = "setpgid",
    [NSBOX_STEP_KEYRING] = "keyring",
    [NSBOX_STEP_SECCOMP] = "seccomp",
};

/* What the parent prepares for the child besides the request. */
struct child_plan {
    int errfd;                  /* write end of the error pipe */
    int devnull;                /* for stdio slots set to -1 */
    unsigned int max_fd;        /* RLIMIT_NOFILE soft limit */
    int cgroup_by_write;        /* CLONE_INTO_CGROUP unavailable */
};

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static void fill_error(struct nsbox_spawn_error *e, int step, int err,
                       const char *detail)
{
    memset(e, 0, sizeof *e);
    e->step = step;
    e->err = err;
    copy_str(e->step_name, sizeof e->step_name, step_names[step]);
    copy_str(e->detail, sizeof e->detail, detail);
}

static const char *nz(const char *s)
{
    return s && *s ? s : NULL;
}

static const char *ns_name(int nstype)
{
    switch (nstype) {
    case CLONE_NEWNS: return "mnt";
    case CLONE_NEWPID: return "pid";
    case CLONE_NEWNET: return "net";
    case CLONE_NEWIPC: return "ipc";
    case CLONE_NEWUTS: return "uts";
    case CLONE_NEWCGROUP: return "cgroup";
    case CLONE_NEWUSER: return "user";
    default: return "namespace";
    }
}

/* ---- child side: async-signal-safe only ---- */

static void __attribute__((noreturn))
child_fail(const struct child_plan *p, int step, int err, const char *detail)
{
    struct nsbox_spawn_error e;
    const char *buf = (const char *)&e;
    size_t off = 0;

    fill_error(&e, step, err, detail);
    while (off < sizeof e) {
        ssize_t n = write(p->errfd, buf + off, sizeof e - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    _exit(127);
}

static int write_zero(int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
    int err = 0;

    if (fd < 0)
        return errno;
    if (write(fd, "0", 1) != 1)
        err = errno ? errno : EIO;
    close(fd);
    return err;
}

/* mkdir -p in a stack buffer; intermediate directories get 0755. The plan
 * makes directories parents first, so the target alone is tried first and
 * the path is walked from the top only when a parent is missing. */
static int make_dirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    struct stat st;
    size_t len = strlen(path);

    if (len >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    if (mkdir(buf, mode) == 0)
        return 0;
    if (errno == ENOENT) {
        for (char *s = buf + 1; *s; s++) {
            if (*s != '/')
                continue;
            *s = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return errno;
            *s = '/';
        }
        if (mkdir(buf, mode) == 0)
            return 0;
    }
    if (errno != EEXIST)
        return errno;
    if (stat(buf, &st) < 0)
        return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

static int make_file(const char *path, mode_t mode)
{
    char dir[PATH_MAX];
    size_t len = strlen(path);
    const char *slash = strrchr(path, '/');

    if (len >= sizeof dir)
        return ENAMETOOLONG;
    /* mknod makes an empty regular file without opening anything; its
     * directory is made only if it is missing. */
    if (mknod(path, S_IFREG | (mode & 07777), 0) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return errno;
    if (slash && slash != path) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        int err = make_dirs(dir, 0755);
        if (err)
            return err;
    }
    if (mknod(path, S_IFREG | (mode & 07777), 0) < 0 && errno != EEXIST)
        return errno;
    return 0;
}

static int pivot_into(const char *newroot)
{
    if (chdir(newroot) < 0)
        return errno;
    /* pivot_root(".", ".") stacks the old root on top of the new one, so no
     * put_old directory is needed inside the new root; detaching "." then
     * drops the old root and uncovers the new one. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return errno;
    if (umount2(".", MNT_DETACH) < 0)
        return errno;
    if (chdir("/") < 0)
        return errno;
    return 0;
}

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* "/proc/self/fd/<fd>" into buf (32 bytes) without snprintf, which is not
 * async-signal-safe. */
static const char *fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    size_t len = sizeof prefix - 1;
    int n = 0;

    memcpy(buf, prefix, len);
    for (int v = fd; n == 0 || v > 0; v /= 10)
        digits[n++] = (char)('0' + v % 10);
    while (n > 0)
        buf[len++] = digits[--n];
    buf[len] = '\0';
    return buf;
}

/* A detached copy of the mount tree at path (relative to dirfd; "" with
 * AT_EMPTY_PATH: dirfd itself) whose files are seen through the ID mapping
 * of the user namespace userns_fd: a file owned by N on disk shows as owned
 * by the host ID that the namespace maps N to, and a file made through it by
 * that ID is stored as N (docs/security.md, "User namespaces"). Returns the
 * mount's descriptor or -errno; closing it drops the copy. */
static int idmapped_clone(int dirfd, const char *path, int at_flags, int userns_fd)
{
    struct idmap_mount_attr attr = { MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd };
    int fd, err;

    fd = (int)syscall(SYS_open_tree, dirfd, path,
                      OPEN_TREE_CLONE | O_CLOEXEC | at_flags);
    if (fd < 0)
        return -errno;
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (at_flags & AT_RECURSIVE),
                &attr, sizeof attr) < 0) {
        err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* Attach a detached mount (idmapped_clone) at target; closes it. The target
 * is followed as mount(2) follows it, /proc/self/fd/N (a target resolved
 * inside a new root) included. */
static int attach_clone(int fd, const char *target)
{
    int err = 0;

    if (fd < 0)
        return -fd;
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, target,
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) < 0)
        err = errno;
    close(fd);
    return err;
}

/* Give `path` to `owner` if it belongs to the host's root, that is, if the
 * plan made it (a mount point's parents, the upper layer's top): what comes
 * from an idmapped layer or volume is seen here as owned by its mapped ID and
 * keeps it, so that a directory of the image is never taken over. The path
 * is inside a root not yet pivoted into, where an absolute symbolic link
 * would lead to the host's files: a path through any link is left alone. */
static int chown_made(const char *path, unsigned int owner)
{
    struct open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    struct stat st;
    int fd, err = 0;

    fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd < 0)
        return errno == ELOOP ? 0 : errno;
    if (fstat(fd, &st) < 0)
        err = errno;
    else if (st.st_uid == 0 && st.st_gid == 0 && !S_ISLNK(st.st_mode) &&
             fchownat(fd, "", owner, owner, AT_EMPTY_PATH) < 0)
        err = errno;
    close(fd);
    return err;
}

/* Bind `sub` of directory `dir` at `target`. `sub` is resolved by openat2
 * beneath `dir`, refusing every symbolic link, and the mount goes through the
 * resulting descriptor: the pod may be changing its volume at this moment,
 * and what is mounted is what was resolved (a subPath: see
 * nsbox/container.py). The descriptor is opened here, in the child's own
 * mount namespace, because bind mounts only take sources from the caller's. */
static int bind_beneath(const char *dir, const char *sub, const char *target,
                        unsigned long flags, int userns_fd)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    char path[32];
    int dfd, fd, err = 0;

    dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno;
    fd = (int)syscall(SYS_openat2, dfd, sub, &how, sizeof how);
    err = fd < 0 ? errno : 0;
    close(dfd);
    if (err)
        return err;
    if (userns_fd >= 0) {
        err = attach_clone(idmapped_clone(fd, "", AT_EMPTY_PATH |
                                          ((flags & MS_REC) ? AT_RECURSIVE : 0),
                                          userns_fd), target);
        close(fd);
        return err;
    }
    if (mount(fd_path(path, fd), target, NULL, flags, NULL) < 0)
        err = errno;
    close(fd);
    return err;
}

/* ---- targets inside the new root ----
 *
 * Before the pivot, a target such as <root>/data/sub is a host path: had the
 * container planted a symbolic link at data/sub in a volume (in an earlier
 * run), the kernel would follow it out to the host, and mkdir, mknod or
 * mount would act there. An op with `root` set is instead resolved by openat2
 * with RESOLVE_IN_ROOT from a descriptor of the root: a link is followed as
 * the container would see it, absolute ones and ".." clamped at its root,
 * magic links (/proc/PID/fd/N) refused. What is made or mounted on is the
 * directory that was resolved, by descriptor (mkdirat, mknodat, and mount
 * through /proc/self/fd/N). */

static int open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* target below root as a relative path ("." for root itself), or NULL. */
static const char *below_root(const char *root, const char *target)
{
    size_t n = strlen(root);

    while (n > 1 && root[n - 1] == '/')
        n--;
    if (strncmp(target, root, n) != 0 || (target[n] != '/' && target[n] != '\0'))
        return NULL;
    target += n;
    while (*target == '/')
        target++;
    return *target ? target : ".";
}

/* A descriptor of the op's root and, in *rel, its target relative to it. */
static int open_root(const struct nsbox_mount_op *op, const char **rel)
{
    *rel = below_root(op->root, op->target);
    if (!*rel) {
        errno = EXDEV;
        return -1;
    }
    return open(op->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* mkdir -p of rel inside the root: each missing component is made by mkdirat
 * in the directory its parent resolved to (0755; the last one `mode`). */
static int make_dirs_in(int rootfd, const char *rel, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(rel);
    int parent, fd, err = 0;

    if (len >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, rel, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT)
        return errno;
    parent = open_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
    if (parent < 0)
        return errno;
    for (size_t start = 0, end; start < len; start = end + 1) {
        for (end = start; end < len && buf[end] != '/'; end++)
            ;
        if (end == start)
            continue;
        buf[end] = '\0';
        fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT) {
            if (mkdirat(parent, buf + start, end == len ? mode : 0755) < 0 &&
                errno != EEXIST) {
                err = errno;
                break;
            }
            fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        }
        if (fd < 0) {
            err = errno;
            break;
        }
        close(parent);
        parent = fd;
        if (end < len)
            buf[end] = '/';
    }
    close(parent);
    return err;
}

/* The directory that rel's last component lies in, made if missing; *name
 * points at that component in buf. */
static int open_parent_in(int rootfd, const char *rel, char *buf,
                          const char **name, int make)
{
    size_t len = strlen(rel);
    char *slash;
    int fd;

    if (len >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, rel, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    slash = strrchr(buf, '/');
    if (!slash) {
        *name = buf;
        return open_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
    }
    *slash = '\0';
    *name = slash + 1;
    fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
    if (fd < 0 && errno == ENOENT && make) {
        int err = make_dirs_in(rootfd, buf, 0755);
        if (err) {
            errno = err;
            return -1;
        }
        fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
    }
    return fd;
}

static int run_op_in_root(const struct nsbox_mount_op *op, int *step)
{
    char buf[PATH_MAX], proc[32];
    const char *rel, *name;
    int rootfd, dfd = -1, err = 0;

    switch (op->kind) {
    case NSBOX_OP_MOUNT: case NSBOX_OP_BIND_BENEATH: case NSBOX_OP_BIND_IDMAP:
        *step = NSBOX_STEP_MOUNT; break;
    case NSBOX_OP_CHOWN:
        /* chown_made follows no link at all */
        *step = NSBOX_STEP_MOUNT; return chown_made(op->target, op->owner);
    case NSBOX_OP_MKDIR: *step = NSBOX_STEP_MKDIR; break;
    case NSBOX_OP_TOUCH: *step = NSBOX_STEP_TOUCH; break;
    case NSBOX_OP_SYMLINK: *step = NSBOX_STEP_SYMLINK; break;
    default: *step = NSBOX_STEP_MOUNT; return EINVAL;
    }
    rootfd = open_root(op, &rel);
    if (rootfd < 0)
        return errno;
    switch (op->kind) {
    case NSBOX_OP_MKDIR:
        err = make_dirs_in(rootfd, rel, op->mode);
        break;
    case NSBOX_OP_TOUCH:
    case NSBOX_OP_SYMLINK:
        dfd = open_parent_in(rootfd, rel, buf, &name, op->kind == NSBOX_OP_TOUCH);
        if (dfd < 0)
            err = errno;
        else if (op->kind == NSBOX_OP_TOUCH)
            err = mknodat(dfd, name, S_IFREG | (op->mode & 07777), 0) < 0 &&
                  errno != EEXIST ? errno : 0;
        else
            err = symlinkat(op->source, dfd, name) < 0 && errno != EEXIST ? errno : 0;
        break;
    default:
        dfd = open_in_root(rootfd, rel, O_PATH);
        if (dfd < 0)
            err = errno;
        else if (op->kind == NSBOX_OP_BIND_BENEATH)
            err = bind_beneath(op->source, op->data, fd_path(proc, dfd), op->flags, op->fd);
        else if (op->kind == NSBOX_OP_BIND_IDMAP)
            err = attach_clone(idmapped_clone(AT_FDCWD, op->source,
                                              (op->flags & MS_REC) ? AT_RECURSIVE : 0,
                                              op->fd), fd_path(proc, dfd));
        else if (mount(nz(op->source), fd_path(proc, dfd), nz(op->fstype), op->flags,
                       nz(op->data)) < 0)
            err = errno;
        break;
    }
    if (dfd >= 0)
        close(dfd);
    close(rootfd);
    return err;
}

/* The target as the error names it: as the container sees it, if in its root. */
static const char *op_detail(const struct nsbox_mount_op *op)
{
    const char *rel = nz(op->root) ? below_root(op->root, op->target) : NULL;

    /* rel points into target, after at least one '/', unless it is "." */
    if (!rel || (rel[0] == '.' && rel[1] == '\0'))
        return op->target;
    return rel - 1;
}

/* Returns 0 or an errno; *step says which step it was. */
static int run_op(const struct nsbox_mount_op *op, int *step)
{
    if (nz(op->root))
        return run_op_in_root(op, step);
    switch (op->kind) {
    case NSBOX_OP_MOUNT:
        *step = NSBOX_STEP_MOUNT;
        if (mount(nz(op->source), op->target, nz(op->fstype), op->flags,
                  nz(op->data)) < 0)
            return errno;
        return 0;
    case NSBOX_OP_MKDIR:
        *step = NSBOX_STEP_MKDIR;
        return make_dirs(op->target, op->mode);
    case NSBOX_OP_TOUCH:
        *step = NSBOX_STEP_TOUCH;
        return make_file(op->target, op->mode);
    case NSBOX_OP_SYMLINK:
        *step = NSBOX_STEP_SYMLINK;
        if (symlink(op->source, op->target) < 0 && errno != EEXIST)
            return errno;
        return 0;
    case NSBOX_OP_PIVOT:
        *step = NSBOX_STEP_PIVOT_ROOT;
        return pivot_into(op->target);
    case NSBOX_OP_BIND_BENEATH:
        *step = NSBOX_STEP_MOUNT;
        return bind_beneath(op->source, op->data, op->target, op->flags, op->fd);
    case NSBOX_OP_BIND_IDMAP:
        *step = NSBOX_STEP_MOUNT;
        return attach_clone(idmapped_clone(AT_FDCWD, op->source,
                                           (op->flags & MS_REC) ? AT_RECURSIVE : 0,
                                           op->fd), op->target);
    case NSBOX_OP_CHOWN:
        *step = NSBOX_STEP_MOUNT;
        return chown_made(op->target, op->owner);
    case NSBOX_OP_UMOUNT:
        *step = NSBOX_STEP_UMOUNT;
        if (umount2(op->target, (int)op->flags) < 0)
            return errno;
        return 0;
    case NSBOX_OP_CHDIR:
        *step = NSBOX_STEP_CHDIR;
        if (chdir(op->target) < 0)
            return errno;
        return 0;
    default:
        *step = NSBOX_STEP_MOUNT;
        return EINVAL;
    }
}

static void apply_capabilities(const struct nsbox_spawn *req,
                               const struct child_plan *p)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];

    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(req->cap_effective >> (32 * i));
        data[i].permitted = (uint32_t)(req->cap_permitted >> (32 * i));
        data[i].inheritable = (uint32_t)(req->cap_inheritable >> (32 * i));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        child_fail(p, NSBOX_STEP_CAPABILITIES, errno, "capset");
    /* Kernels before 4.3 have no ambient set; nothing to clear there. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 &&
        !(errno == EINVAL && req->cap_ambient == 0))
        child_fail(p, NSBOX_STEP_AMBIENT, errno, "ambient set");
    for (int cap = 0; cap <= req->cap_last && cap < 64; cap++)
        if ((req->cap_ambient >> cap) & 1 &&
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            child_fail(p, NSBOX_STEP_AMBIENT, errno, "ambient set");
}

static void switch_identity(const struct nsbox_spawn *req,
                            const struct child_plan *p)
{
    /* Raw syscalls, not the libc wrappers: glibc's set*id broadcast the
     * change to every thread it knows of, and after a raw clone of a
     * threaded parent those are the parent's threads. */
    if (req->set_groups &&
        syscall(SYS_setgroups, (size_t)req->n_groups, req->groups) < 0)
        child_fail(p, NSBOX_STEP_SETGROUPS, errno, "");
    if (req->set_gid &&
        syscall(SYS_setresgid, req->gid, req->gid, req->gid) < 0)
        child_fail(p, NSBOX_STEP_SETGID, errno, "");
    if (req->set_caps) {
        /* Dropping from the bounding set needs CAP_SETPCAP, which a
         * non-root uid no longer has: do it before switching. */
        for (int cap = 0; cap <= req->cap_last && cap < 64; cap++)
            if (!((req->cap_bounding >> cap) & 1) &&
                prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                child_fail(p, NSBOX_STEP_BOUNDING, errno, "bounding set");
        /* Keep the permitted set across setresuid so capset below can
         * still grant what the plan asks for. */
        if (req->set_uid && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            child_fail(p, NSBOX_STEP_KEEPCAPS, errno, "keepcaps");
    }
    if (req->set_uid &&
        syscall(SYS_setresuid, req->uid, req->uid, req->uid) < 0)
        child_fail(p, NSBOX_STEP_SETUID, errno, "");
    if (req->set_caps)
        apply_capabilities(req, p);
}

static void close_range_or_loop(unsigned int lo, unsigned int hi,
                                unsigned int max_fd)
{
    if (syscall(SYS_close_range, lo, hi, 0) == 0)
        return;
    /* No close_range (before 5.9): close one by one up to the limit. */
    for (unsigned int fd = lo; fd <= hi && fd < max_fd; fd++)
        close((int)fd);
}

static void close_other_fds(const struct nsbox_spawn *req,
                            const struct child_plan *p)
{
    unsigned int lo = 3;

    for (;;) {
        int next = -1;      /* lowest kept fd >= lo */
        for (int i = -2; i < req->n_keep_fds; i++) {
            int fd = i == -2 ? (req->init ? req->init_exe_fd : -1)
                   : i == -1 ? p->errfd : req->keep_fds[i];
            if (fd >= (int)lo && (next < 0 || fd < next))
                next = fd;
        }
        if (next < 0) {
            close_range_or_loop(lo, ~0U, p->max_fd);
            return;
        }
        if ((unsigned int)next > lo)
            close_range_or_loop(lo, (unsigned int)next - 1, p->max_fd);
        lo = (unsigned int)next + 1;
    }
}

static void setup_stdio(const struct nsbox_spawn *req,
                        const struct child_plan *p)
{
    int src[3];

    for (int i = 0; i < 3; i++)
        src[i] = req->stdio[i] >= 0 ? req->stdio[i] : p->devnull;
    /* A source already sitting on another of 0..2 (say stdout=2,
     * stderr=1) would be clobbered by an earlier dup2: move it up first. */
    for (int i = 0; i < 3; i++) {
        if (src[i] < 3 && src[i] != i) {
            int fd = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
            if (fd < 0)
                child_fail(p, NSBOX_STEP_STDIO, errno, "dup");
            src[i] = fd;
        }
    }
    for (int i = 0; i < 3; i++) {
        /* dup2 onto itself is a no-op that would leave FD_CLOEXEC set. */
        int r = src[i] == i ? fcntl(i, F_SETFD, 0) : dup2(src[i], i);
        if (r < 0)
            child_fail(p, NSBOX_STEP_STDIO, errno, "dup2");
    }
    for (int i = 0; i < req->n_keep_fds; i++)
        if (req->keep_fds[i] > 2 && fcntl(req->keep_fds[i], F_SETFD, 0) < 0)
            child_fail(p, NSBOX_STEP_STDIO, errno, "keep_fds");
}

/* Installs the container's seccomp filter (docs/security.md, "System calls"),
 * compiled by the parent: no libseccomp here. Without no_new_privs this runs
 * while the child still holds CAP_SYS_ADMIN, before the identity switch; every
 * later call up to exec (and nsbox-init's) must then pass the filter, and one
 * that does not fails its step with the filter's errno. The filter also binds
 * the init: it is inherited by the main process forked from it. */
static void install_seccomp(const struct nsbox_spawn *req,
                            const struct child_plan *p)
{
    struct sock_fprog prog;

    if (!req->seccomp_filter)
        return;
    prog.len = (unsigned short)req->seccomp_len;
    prog.filter = (struct sock_filter *)req->seccomp_filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        child_fail(p, NSBOX_STEP_SECCOMP, errno, "filter");
}

static void __attribute__((noreturn))
exec_argv(const struct nsbox_spawn *req, const struct child_plan *p)
{
    int err = ENOENT;
    const char *tried = req->argv[0];

    for (int i = 0; i < req->n_exec_paths; i++) {
        execve(req->exec_paths[i], (char *const *)req->argv,
               (char *const *)req->envp);
        err = errno;
        tried = req->exec_paths[i];
    }
    child_fail(p, NSBOX_STEP_EXEC, err, tried);
}

/* The tiny init (docs/lifecycle.md, Termination 10). PID 1 of a PID namespace only gets the signals
 * it handles (from an ancestor namespace also SIGKILL and SIGSTOP), so a
 * command without handlers ignores SIGTERM there, and orphans, reparented to
 * PID 1, stay zombies unless it reaps them. Here the child stays as PID 1
 * and argv runs in a grandchild, the main process. All signals are blocked
 * before the fork; the child then execs nsbox-init (csrc/init.c) by the
 * descriptor the parent opened, which forwards signals to the main process
 * and reaps. The blocked mask and pending signals survive execve, so none is
 * lost; exec'd, the init is a small program, not a copy of the parent's
 * memory. The main process gets its own process group and, on a terminal,
 * the foreground, so ^C reaches it once and not again through the init.
 * Both copies of the error pipe close on exec, so EOF still means that both
 * exec'd; an exec failure of either is written to it. */
static void __attribute__((noreturn))
init_main(const struct nsbox_spawn *req, const struct child_plan *p)
{
    sigset_t all, none;
    pid_t main_pid;
    char pid_arg[24];
    char *init_argv[] = {"nsbox-init", "--main", pid_arg, NULL};
    char *init_envp[] = {NULL};

    sigfillset(&all);
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        child_fail(p, NSBOX_STEP_SIGNALS, errno, "init");
    /* The raw system call, not glibc's fork(), which takes locks that other
     * threads of the process we were cloned from may have held. */
    main_pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (main_pid < 0)
        child_fail(p, NSBOX_STEP_FORK, errno, "main process");
    if (main_pid == 0) {
        if (setpgid(0, 0) < 0)
            child_fail(p, NSBOX_STEP_SETPGID, errno, "");
        /* From a background group this needs SIGTTOU blocked: it still is. */
        if (req->ctty && tcsetpgrp(0, getpid()) < 0)
            child_fail(p, NSBOX_STEP_CTTY, errno, "stdin");
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
            child_fail(p, NSBOX_STEP_SIGNALS, errno, "");
        exec_argv(req, p);
    }
    snprintf(pid_arg, sizeof pid_arg, "%d", (int)main_pid);
    syscall(SYS_execveat, req->init_exe_fd, "", init_argv, init_envp, AT_EMPTY_PATH);
    int err = errno;
    kill(main_pid, SIGKILL);
    child_fail(p, NSBOX_STEP_EXEC, err, "nsbox-init");
}

/* chdir to path resolved inside the current root: symbolic links are
 * followed as the process would see them, never out of its root, and magic
 * links (/proc/self/fd/N, /proc/PID/cwd) are refused, so a working directory
 * cannot name a descriptor. */
static int change_dir(const char *path)
{
    int rootfd, fd, err = 0;

    rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return errno;
    fd = open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
    if (fd < 0 && errno == ENOSYS) {    /* no openat2 (before 5.6) */
        close(rootfd);
        return chdir(path) < 0 ? errno : 0;
    }
    if (fd < 0 || fchdir(fd) < 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    close(rootfd);
    return err;
}

static void __attribute__((noreturn))
child_main(const struct nsbox_spawn *req, const struct child_plan *p)
{
    struct sigaction sa;
    sigset_t none;
    int step, err;

    /* Until exec this process holds a copy of the parent's memory and fds,
     * yet it may already sit in a container's PID namespace: not dumpable,
     * the container's root can neither ptrace it nor open its /proc/PID/fd
     * (runc does the same). execve makes it dumpable again. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    /* The parent's handlers are meaningless here (and Python's would write
     * to its wakeup fd); the parent blocked all signals around clone. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);      /* EINVAL for libc-reserved */
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        child_fail(p, NSBOX_STEP_SIGNALS, errno, "");

    if (req->setsid && setsid() < 0)
        child_fail(p, NSBOX_STEP_SETSID, errno, "");
    if (req->ctty && ioctl(req->stdio[0], TIOCSCTTY, 0) < 0)
        child_fail(p, NSBOX_STEP_CTTY, errno, "stdin");
    if (req->pdeathsig && prctl(PR_SET_PDEATHSIG, req->pdeathsig, 0, 0, 0) < 0)
        child_fail(p, NSBOX_STEP_PDEATHSIG, errno, "");

    /* Join cgroups before anything else so all the set-up is accounted. */
    for (int i = 0; i < req->n_cgroup_procs; i++)
        if ((err = write_zero(AT_FDCWD, req->cgroup_procs[i])))
            child_fail(p, NSBOX_STEP_CGROUP, err, req->cgroup_procs[i]);
    if (p->cgroup_by_write && (err = write_zero(req->cgroup_fd, "cgroup.procs")))
        child_fail(p, NSBOX_STEP_CGROUP, err, "cgroup.procs");
    /* A cgroup namespace made now is rooted at the cgroup just joined. */
    if (req->unshare_flags && unshare((int)req->unshare_flags) < 0)
        child_fail(p, NSBOX_STEP_CGROUP, errno, "unshare");

    /* The mount namespace goes last: once in it, paths (including the
     * /proc ones the fds came from) may no longer mean the same thing. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < req->n_join; i++) {
            int type = req->join[i].nstype;
            if (type == CLONE_NEWPID || (type == CLONE_NEWNS) != (pass == 1))
                continue;
            if (setns(req->join[i].fd, type) < 0)
                child_fail(p, NSBOX_STEP_SETNS, errno, ns_name(type));
        }
    }

    if (req->hostname && sethostname(req->hostname, strlen(req->hostname)) < 0)
        child_fail(p, NSBOX_STEP_HOSTNAME, errno, req->hostname);

    for (int i = 0; i < req->n_ops; i++) {
        const struct nsbox_mount_op *op = &req->ops[i];
        err = run_op(op, &step);
        if (err && !(err == ENOENT && op->optional))
            child_fail(p, step, err, op_detail(op));
    }

    /* The session keyring is the host root's otherwise: its keys readable,
     * and usable, from inside (runc joins a new one per container too). Made
     * while still root, so it is root's, not the container user's. */
    if (req->new_session_keyring &&
        syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL, 0, 0, 0) < 0 &&
        errno != ENOSYS)
        child_fail(p, NSBOX_STEP_KEYRING, errno, "session");

    /* The pod's user namespace comes after the mounts, made with the host's
     * privileges in a mount namespace that stays the host's: root inside
     * can never mount, whatever capabilities it is given. From here on the
     * capabilities are those of the pod's namespace and switch_identity
     * must set the ids, which are still the host's. */
    if (req->userns_fd >= 0 && setns(req->userns_fd, CLONE_NEWUSER) < 0)
        child_fail(p, NSBOX_STEP_SETNS, errno, "user");

    /* Without no_new_privs a filter needs CAP_SYS_ADMIN (in the pod's user
     * namespace, once joined): it goes on before the identity switch. */
    if (!req->no_new_privs)
        install_seccomp(req, p);
    switch_identity(req, p);
    /* Changing the euid/egid cleared the parent-death signal: set it again. */
    if (req->pdeathsig && (req->set_uid || req->set_gid) &&
        prctl(PR_SET_PDEATHSIG, req->pdeathsig, 0, 0, 0) < 0)
        child_fail(p, NSBOX_STEP_PDEATHSIG, errno, "");

    if (req->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(p, NSBOX_STEP_NO_NEW_PRIVS, errno, "");

    /* Every descriptor the parent had (namespace, cgroup, pidfds, the
     * watcher's sockets and files) is closed before the working directory is
     * resolved: none can be reached through /proc/self/fd (CVE-2024-21626). */
    setup_stdio(req, p);
    close_other_fds(req, p);
    if (req->cwd && (err = change_dir(req->cwd)))
        child_fail(p, NSBOX_STEP_CHDIR, err, req->cwd);
    if (req->no_new_privs)
        install_seccomp(req, p);
    if (req->init)
        init_main(req, p);
    exec_argv(req, p);
}

/* ---- parent side ---- */

static pid_t clone_child(const struct nsbox_spawn *req, struct child_plan *p,
                         int *pidfd)
{
    struct clone3_args args;
    size_t size = CLONE_ARGS_SIZE_VER0;
    pid_t pid;

    memset(&args, 0, sizeof args);
    args.flags = req->clone_flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    if (req->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)req->cgroup_fd;
        size = CLONE_ARGS_SIZE_VER2;
    }
    p->cgroup_by_write = 0;
    pid = syscall(SYS_clone3, &args, size);
    if (pid < 0 && req->cgroup_fd >= 0 && (errno == E2BIG || errno == EINVAL)) {
        /* clone3 without CLONE_INTO_CGROUP (Linux 5.3-5.6): the child
         * joins by writing cgroup.procs instead. */
        p->cgroup_by_write = 1;
        args.flags &= ~CLONE_INTO_CGROUP;
        args.cgroup = 0;
        pid = syscall(SYS_clone3, &args, (size_t)CLONE_ARGS_SIZE_VER0);
    }
    if (pid < 0 && errno == ENOSYS) {
        /* No clone3 (or a seccomp filter hiding it): the legacy clone,
         * fork-like (no CLONE_VM), which returns a pidfd via parent_tid. */
        unsigned long flags = (unsigned long)req->clone_flags | SIGCHLD;
        p->cgroup_by_write = req->cgroup_fd >= 0;
        pid = syscall(SYS_clone, flags | CLONE_PIDFD, 0, pidfd, 0, 0);
        if (pid < 0 && errno == EINVAL) {
            *pidfd = -1;
            pid = syscall(SYS_clone, flags, 0, 0, 0, 0);
        }
    }
    if (pid == 0)
        child_main(req, p);
    return pid;
}

/* Keeps fd off 0..2, which the child overwrites with stdio. */
static int above_stdio(int fd)
{
    int moved;

    if (fd < 0 || fd > 2)
        return fd;
    moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
}

int nsbox_spawn(const struct nsbox_spawn *req, int *pidfd_out,
                struct nsbox_spawn_error *err)
{
    struct child_plan plan = { -1, -1, 0, 0 };
    struct rlimit rl;
    sigset_t all, old;
    int pipefd[2], saved_pidns = -1, pidfd = -1, e;
    size_t got = 0;
    pid_t pid;

    *pidfd_out = -1;
    memset(err, 0, sizeof *err);
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        fill_error(err, NSBOX_STEP_PIPE, errno, "error pipe");
        return -1;
    }
    plan.errfd = above_stdio(pipefd[1]);
    if (plan.errfd < 0) {
        fill_error(err, NSBOX_STEP_PIPE, errno, "error pipe");
        pid = -1;
        goto out;
    }
    if ((req->stdio[0] < 0 || req->stdio[1] < 0 || req->stdio[2] < 0) &&
        (plan.devnull = above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC))) < 0) {
        fill_error(err, NSBOX_STEP_STDIO, errno, "/dev/null");
        pid = -1;
        goto out;
    }
    /* Bounds the close() loop used when close_range is missing. */
    plan.max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < plan.max_fd)
        plan.max_fd = (unsigned int)rl.rlim_cur;

    /* setns(CLONE_NEWPID) only changes where our next child is born, so
     * the parent joins, clones, and goes back to its own pid_for_children. */
    for (int i = 0; i < req->n_join; i++) {
        if (req->join[i].nstype != CLONE_NEWPID)
            continue;
        if (saved_pidns < 0)
            saved_pidns = open("/proc/thread-self/ns/pid_for_children",
                               O_RDONLY | O_CLOEXEC);
        if (saved_pidns < 0 || setns(req->join[i].fd, CLONE_NEWPID) < 0) {
            fill_error(err, NSBOX_STEP_SETNS, errno, "pid");
            pid = -1;
            goto out;
        }
    }

    /* No signal handler may run in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid = clone_child(req, &plan, &pidfd);
    e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        fill_error(err, NSBOX_STEP_CLONE, e, "");

out:
    if (saved_pidns >= 0) {
        setns(saved_pidns, CLONE_NEWPID);
        close(saved_pidns);
    }
    if (plan.errfd >= 0)
        close(plan.errfd);
    if (plan.devnull >= 0)
        close(plan.devnull);
    if (pid < 0) {
        close(pipefd[0]);
        return -1;
    }

    /* Blocks until the child execs (EOF: CLOEXEC closed the pipe) or
     * reports a failed step. */
    while (got < sizeof *err) {
        ssize_t n = read(pipefd[0], (char *)err + got, sizeof *err - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pipefd[0]);
    if (got == 0) {
        *pidfd_out = pidfd;
        return pid;
    }
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    if (pidfd >= 0)
        close(pidfd);
    if (got != sizeof *err)
        fill_error(err, NSBOX_STEP_PIPE, EIO, "short error report");
    return -1;
}

/* ---- thin wrappers ---- */

int nsbox_unshare(int flags)
{
    return unshare(flags) < 0 ? -errno : 0;
}

int nsbox_setns(int fd, int nstype)
{
    return setns(fd, nstype) < 0 ? -errno : 0;
}

int nsbox_mount(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data)
{
    return mount(nz(source), target, nz(fstype), flags, nz(data)) < 0 ? -errno : 0;
}

int nsbox_umount2(const char *target, int flags)
{
    return umount2(target, flags) < 0 ? -errno : 0;
}

int nsbox_pidfd_open(int pid, unsigned int flags)
{
    long fd = syscall(SYS_pidfd_open, pid, flags);
    return fd < 0 ? -errno : (int)fd;
}

int nsbox_pidfd_send_signal(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int nsbox_sealed_copy(const char *path, const char *name)
{
    char buf[65536];
    int src, fd, err = 0;
    ssize_t n;

    src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return -errno;
    /* MFD_EXEC: with vm.memfd_noexec=1 a memfd is otherwise not executable;
     * kernels before 6.3 do not know the flag. */
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        err = errno;
        close(src);
        return -err;
    }
    while ((n = read(src, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        for (ssize_t off = 0, w; off < n; off += w) {
            w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                w = 0;
            else if (w <= 0) {
                err = w < 0 ? errno : EIO;
                break;
            }
        }
        if (err)
            break;
    }
    close(src);
    if (!err && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
                      F_SEAL_SEAL) < 0)
        err = errno;
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

int nsbox_drop_privileges(int cap_last)
{
    struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];

    for (int cap = 0; cap <= cap_last && cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &head, data) < 0)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

int nsbox_idmap_probe(const char *path, int userns_fd, int recursive)
{
    int fd = idmapped_clone(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, userns_fd);

    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int nsbox_malloc_trim(void)
{
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}
