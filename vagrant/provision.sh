#!/usr/bin/env bash
# vagrant/provision.sh - set up nsbox on a fresh Debian/Ubuntu machine and show it working.
#
#   sudo vagrant/provision.sh            # the repository is the parent of this script's directory
#   sudo vagrant/provision.sh DIR        # or DIR (Vagrant uploads the script and passes /vagrant)
#
# It is the provisioner of vagrant/Vagrantfile and works the same on any fresh
# Debian 12 / Ubuntu 22.04+ host (which is how CI exercises it): it describes
# the machine (kernel, cgroup mode), then runs the README's set-up command,
# `setup.sh demo` - Debian packages, a virtualenv, the package,
# /usr/local/bin/nsbox, then `nsbox doctor` and `nsbox demo all` - and says
# how to run the tests. Exit code: setup.sh's (non-zero if the demo failed).
set -euo pipefail

say() { echo "==> provision: $*"; }
die() { echo "error: provision: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=${1:-$(dirname "$here")}
[ -x "$repo/setup.sh" ] || die "no setup.sh in $repo (usage: sudo $0 [REPOSITORY DIR])"
repo=$(cd "$repo" && pwd -P)
[ "$(id -u)" = 0 ] || die "must run as root: sudo $0 $*"

# What kind of machine this is: nsbox supports all of these, but say which one.
os=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-$ID}") || uname -s)
case $(stat -fc %T /sys/fs/cgroup 2>/dev/null) in
    cgroup2fs) cgroups="v2 (unified)" ;;
    tmpfs) if [ -d /sys/fs/cgroup/unified ]; then cgroups="v1 (hybrid)"; else cgroups="v1"; fi ;;
    *) cgroups="not mounted" ;;
esac
say "$os, kernel $(uname -r), $(nproc) CPUs, cgroups $cgroups"
say "nsbox from $repo"

rc=0
"$repo/setup.sh" demo </dev/null || rc=$?
if [ "$rc" != 0 ]; then
    echo "error: provision: '$repo/setup.sh demo' failed (exit $rc); see above" >&2
    exit "$rc"
fi

say "nsbox is installed and the demo passed. Next:"
if [ "$repo" = /vagrant ] && id vagrant >/dev/null 2>&1; then
    say "  vagrant ssh -c 'cd /vagrant && sudo ./setup.sh test'   # the test suite"
    say "  vagrant ssh, then: sudo nsbox run hello --rm -a -- hostname"
else
    say "  cd $repo && sudo ./setup.sh test   # the test suite"
    say "  sudo nsbox run hello --rm -a -- hostname"
fi
