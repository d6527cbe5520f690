#!/usr/bin/env bash
# setup.sh - install nsbox on a Debian/Ubuntu machine, then run the demo or the tests.
#
#   sudo ./setup.sh demo              # install, then `nsbox doctor` and `nsbox demo all`
#   sudo ./setup.sh test [ARGS...]    # install with the test extra, then ruff + mypy (whole suite only) and pytest (ARGS go to pytest)
#
# What "install" does, each step only when needed (a re-run with nothing
# changed is fast and works offline):
#   - apt-get installs the missing Debian packages (checked with dpkg-query);
#   - a virtualenv at <repo>/.venv from /usr/bin/python3 (or $NSBOX_PYTHON);
#   - pip installs this checkout into it (not editable), skipped when the
#     sources are unchanged since the last install (NSBOX_REINSTALL=1 forces it);
#   - <repo>/.venv/bin/nsbox starts CPython lean (-I -S) on the virtualenv's packages;
#   - /usr/local/bin/nsbox -> <repo>/.venv/bin/nsbox.
# Exit code: the demo's, or non-zero when a check or pytest failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cd "$HERE"
VENV=$HERE/.venv
LINK=/usr/local/bin/nsbox
# Debian packages: the build (cffi C modules; libseccomp-dev compiles seccomp profiles), the tools the tests observe with
# (ip, nsenter, findmnt, ipcs/ipcmk, ps), and skopeo, which fetches images (docs/images.md).
PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev libcap-dev libffi-dev libseccomp-dev pkg-config
          iproute2 util-linux procps skopeo)
# The image tests also run a registry and build images from a static busybox (tests/imagekit.py).
TEST_PACKAGES=(docker-registry busybox-static zstd)

step() { echo "==> $*"; }
die() { echo "error: $*" >&2; exit 1; }
usage() {
    echo "usage: sudo ./setup.sh demo | sudo ./setup.sh test [PYTEST ARGS...]"
}

mode=${1:-}
case $mode in
    demo | test) shift ;;
    -h | --help | help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || die "setup.sh must run as root: sudo ./setup.sh $mode"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

# ---- Debian packages ----------------------------------------------------------
install_packages() {
    local p missing=()
    if ! command -v dpkg-query >/dev/null; then
        echo "warning: not a Debian/Ubuntu system; make sure these are installed: ${PACKAGES[*]}" >&2
        return 0
    fi
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "installing packages: ${missing[*]}"
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/nsbox-apt.XXXXXX")
    if ! { apt-get -q update && apt-get -q -y -o DPkg::Lock::Timeout=300 install \
            --no-install-recommends "${missing[@]}"; } </dev/null >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        die "apt-get failed (full log: $log)"
    fi
    rm -f "$log"
    for p in "${missing[@]}"; do
        [ "$p" = docker-registry ] && quiet_registry_service
    done
    return 0
}

# Debian's docker-registry package enables and starts a registry on :5000. The tests
# run their own on a free port; a registry service we installed only for them is
# stopped and disabled (one installed before setup.sh is left as it was).
quiet_registry_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null; then
        invoke-rc.d docker-registry stop >/dev/null 2>&1 || true
        update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
    step "stopped and disabled the docker-registry service its package started (the tests run their own)"
}

# ---- the virtualenv -------------------------------------------------------------
pick_python() {
    local py=${NSBOX_PYTHON:-/usr/bin/python3}
    py=$(command -v "$py") || die "no Python interpreter '${NSBOX_PYTHON:-/usr/bin/python3}' (NSBOX_PYTHON)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
        || die "$py is not Python >= 3.10"
    echo "$py"
}

# What identifies an interpreter for our purpose: its installation and version.
python_id() { "$1" -c 'import sys; print(sys.base_prefix, *sys.version_info[:3])' 2>/dev/null; }

make_venv() {
    local py=$1
    if [ -x "$VENV/bin/python" ] && [ "$(python_id "$VENV/bin/python")" = "$(python_id "$py")" ] &&
       "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    step "creating virtualenv .venv ($("$py" -V 2>&1), $py)"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" \
        || die "'$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
}

# ---- the package ----------------------------------------------------------------
# A digest of everything that goes into the installed package, plus the extras
# and the interpreter: when it matches the last install, pip is not run again.
source_digest() {
    local extras=$1 p inputs=()
    for p in pyproject.toml setup.py setup.cfg MANIFEST.in nsbox csrc; do
        [ -e "$p" ] && inputs+=("$p")
    done
    {
        echo "extras=$extras python=$(python_id "$VENV/bin/python")"
        find "${inputs[@]}" -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'nsbox/_native*' ! -path 'nsbox/_seccomp.*' ! -path 'nsbox/._seccomp*' \
            ! -path 'nsbox/nsbox-init' ! -path 'nsbox/.nsbox-init.*' \
            ! -path 'nsbox/nsbox-idle' ! -path 'nsbox/.nsbox-idle.*' -print0 2>/dev/null \
            | LC_ALL=C sort -z | xargs -0r sha256sum
    } | sha256sum | cut -d' ' -f1
}

# Installed and importable, from outside the source tree (-I: no cwd on sys.path).
installed_ok() { [ -x "$VENV/bin/nsbox" ] && (cd / && "$VENV/bin/python" -I -c 'import nsbox') 2>/dev/null; }

up_to_date() {
    local stamp=$VENV/.nsbox-installed
    [ "$(python_id "$VENV/bin/python")" = "$(python_id "${NSBOX_PYTHON:-/usr/bin/python3}")" ] || return 1
    installed_ok || return 1
    [ "${NSBOX_REINSTALL:-0}" != 1 ] || return 1
    # a test install also serves the demo
    grep -qx "$(source_digest "$1")" "$stamp" 2>/dev/null && return 0
    [ -z "$1" ] && grep -qx "$(source_digest test)" "$stamp" 2>/dev/null
}

install_nsbox() {
    local extras=$1 target=.
    [ -n "$extras" ] && target=".[$extras]"
    [ -f pyproject.toml ] || die "no pyproject.toml in $HERE"
    step "building nsbox into .venv (pip install $target)"
    rm -f "$VENV/.nsbox-installed"
    # -qq: only errors, which include a failed build's output.
    "$VENV/bin/python" -m pip install -qq "$target" </dev/null \
        || die "pip install $target failed (see above)"
    [ -x "$VENV/bin/nsbox" ] || die "the package installed no 'nsbox' command (pyproject.toml [project.scripts])"
    source_digest "$extras" >"$VENV/.nsbox-installed"
}

# The tests also run the CLI as `python -m nsbox` from the repo root, which
# imports the source nsbox/: give it the compiled modules (_native, _seccomp), nsbox-init and
# nsbox-idle just built (atomically: a running process may have the old ones
# mapped), replacing any stale build.
sync_native_into_tree() {
    local dir so
    dir=$(cd / && "$VENV/bin/python" -I -c 'import nsbox._native as m, os; print(os.path.dirname(m.__file__))' \
          2>/dev/null) || return 0
    so=$(cd "$dir" && ls _native*.so) || return 0
    find nsbox -maxdepth 1 -name '_native*.so' ! -name "$so" -delete
    copy_into_tree "$dir/$so" "$so" "the compiled module"
    so=$(cd "$dir" && ls _seccomp*.so) || return 0
    find nsbox -maxdepth 1 -name '_seccomp*.so' ! -name "$so" -delete
    copy_into_tree "$dir/$so" "$so" "the seccomp module"
    copy_into_tree "$dir/nsbox-init" nsbox-init "the init program"
    copy_into_tree "$dir/nsbox-idle" nsbox-idle "the idle program"
}

copy_into_tree() {
    local src=$1 name=$2 what=$3 tmp
    cmp -s "$src" "nsbox/$name" && return 0
    tmp=$(mktemp "nsbox/.$name.XXXXXX")
    cp "$src" "$tmp" && chmod 0755 "$tmp"
    mv -f "$tmp" "nsbox/$name"
    step "copied $what into the source tree: nsbox/$name"
}

# The console script pip writes runs `site` (.pth files, Debian's sitecustomize) and imports re
# before nsbox: ≈ 3 ms of every command. It is replaced by one that starts CPython isolated and
# without site (-I -S: no PYTHON* variables, no current directory, no user or system
# site-packages) with exactly this virtualenv's site-packages on sys.path (docs/design.md §6).
# A virtualenv path a #! line cannot carry keeps pip's script.
write_launcher() {
    local script=$VENV/bin/nsbox python=$VENV/bin/python paths tmp
    case $python in *[[:space:]]*) return 0 ;; esac
    [ ${#python} -le 200 ] || return 0
    paths=$(cd / && "$python" -I -c 'import sysconfig as s; print(sorted({s.get_path("purelib"), s.get_path("platlib")}))') \
        || die "cannot ask $python for its site-packages"
    tmp=$(mktemp "$VENV/bin/.nsbox.XXXXXX")
    cat >"$tmp" <<EOF
#!$python -IS
# nsbox's command, written by setup.sh: CPython without site, on this virtualenv's packages only.
import sys

sys.path += $paths
from nsbox.client import main

main()
EOF
    chmod 0755 "$tmp"
    if cmp -s "$tmp" "$script"; then rm -f "$tmp"; else mv -f "$tmp" "$script"; fi
}

link_command() {
    if [ "$(readlink "$LINK" 2>/dev/null)" != "$VENV/bin/nsbox" ]; then
        mkdir -p "$(dirname "$LINK")"
        ln -sfn "$VENV/bin/nsbox" "$LINK"
    fi
    step "nsbox is available system-wide: $LINK -> $VENV/bin/nsbox"
}

# One install at a time per checkout; a test or demo run holds the lock shared,
# so that another setup.sh does not reinstall the package under it.
LOCK=${TMPDIR:-/tmp}/nsbox-setup.$(echo "$HERE" | cksum | cut -d' ' -f1).lock
lock() {  # lock -s|-x
    command -v flock >/dev/null || return 0
    flock -n "$1" 8 && return 0
    step "waiting for another setup.sh in $HERE to finish"
    flock "$1" 8
}

extras=
if [ "$mode" = test ]; then
    extras="test"
    PACKAGES+=("${TEST_PACKAGES[@]}")
fi

exec 8>>"$LOCK"
lock -s
if [ -x "$VENV/bin/python" ] && up_to_date "$extras"; then
    step "nsbox in .venv is up to date"
else
    flock -u 8 2>/dev/null || true
    lock -x
    install_packages
    make_venv "$(pick_python)"
    if up_to_date "$extras"; then
        step "nsbox in .venv is up to date"
    else
        install_nsbox "$extras"
    fi
    lock -s
fi
sync_native_into_tree
write_launcher
link_command

# ---- run --------------------------------------------------------------------------
# Children get fd 8 closed: a process that outlives them must not keep the lock.
rc=0
if [ "$mode" = demo ]; then
    step "nsbox doctor"
    "$VENV/bin/nsbox" doctor 8>&- || {
        rc=$?
        echo "error: nsbox doctor found missing pieces (see above); not running the demo" >&2
        exit "$rc"
    }
    step "nsbox demo all"
    "$VENV/bin/nsbox" demo all 8>&- || rc=$?
else
    # The default is the whole suite; a path among ARGS replaces it.
    paths=(tests)
    for a in "$@"; do
        case $a in -*) continue ;; esac
        if [ -e "${a%%::*}" ]; then paths=(); break; fi
    done
    [ -x "$VENV/bin/pytest" ] || die "pytest is not in .venv (the 'test' extra of pyproject.toml)"
    # The whole suite starts with the lint and type checks (their settings: pyproject.toml).
    if [ ${#paths[@]} -gt 0 ]; then
        step "checking the code: ruff check, ruff format --check, mypy"
        "$VENV/bin/ruff" check --quiet . 8>&- || rc=1
        "$VENV/bin/ruff" format --check --quiet . 8>&- || rc=1
        "$VENV/bin/mypy" 8>&- || rc=1
        [ "$rc" = 0 ] || echo "error: the checks above failed (the tests run all the same)" >&2
    fi
    shown=
    [ $# -gt 0 ] && shown=$(printf ' %q' "$@")
    step "running the tests: pytest${paths[*]:+ ${paths[*]}}$shown"
    # The pytest script, not `python -m pytest`: -m would put the repo root first
    # on sys.path, and the source nsbox/ (without the compiled _native) would
    # shadow the installed package.
    prc=0
    "$VENV/bin/pytest" -q -p no:cacheprovider "${paths[@]}" "$@" 8>&- || prc=$?
    [ "$prc" = 0 ] || rc=$prc
fi
exit "$rc"
