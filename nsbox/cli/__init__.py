"""The `nsbox` command: argument parsing and output, nothing else.

This core holds what every command shares: the global options, the command
registry, the parser and the error handling. Each group of commands is a module
beside it (`pods`, `create`, `delete`, `objects`, `images`, `system`) that declares each
command's options next to its handler; only the running command's module is
imported and only its sub-parser is built, so that `nsbox get pods` starts fast
(docs/design.md §6). Errors the user can act on arrive as NsboxError and leave
as one `error:` line per problem with exit code 1; usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys

from nsbox.errors import NsboxError
from nsbox.state import DEFAULT_ROOT

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

# Each command word and the module of nsbox.cli that declares it, in the order `nsbox --help` lists them.
MODULES = {
    "apply": "create",
    "pod": "create",
    "run": "create",
    "create": "create",
    "get": "pods",
    "inspect": "pods",
    "describe": "pods",
    "logs": "pods",
    "exec": "pods",
    "delete": "delete",
    "wait": "pods",
    "top": "pods",
    "image": "images",
    "images": "images",
    "doctor": "system",
    "gc": "system",
    "demo": "system",
    "version": "system",
    "server": "system",
}


# What `get`, `describe`, `top` and `delete` accept as a kind.
POD_KINDS = ["pods", "pod", "po"]
CONFIG_KINDS = {
    "configmaps": "ConfigMap",
    "configmap": "ConfigMap",
    "cm": "ConfigMap",
    "secrets": "Secret",
    "secret": "Secret",
}


class Command:
    """One command word: its help line, its options and its handler."""

    def __init__(
        self,
        name: str,
        help: str,
        arguments: Callable[[argparse.ArgumentParser], None] | None,
        run: Callable[[argparse.Namespace], int],
    ):
        self.name, self.help, self.arguments, self.run = name, help, arguments, run


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated function as the handler of `name`, whose options `arguments` declares."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name, help, arguments, fn)
        return fn

    return register


def runtime(args: argparse.Namespace) -> Any:
    from nsbox.pods import Runtime

    return Runtime(args.root, getattr(args, "image_store", None))


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def print_object(doc: dict[str, Any], output: str, *, sort_keys: bool = True) -> None:
    """One object (or a List) as JSON or YAML."""
    if output == "json":
        import json

        print(json.dumps(doc, indent=4, sort_keys=sort_keys))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(doc, sort_keys=sort_keys, default_flow_style=False))


# ---------------------------------------------------------------- the parser


def _command_word(argv: list[str]) -> str | None:
    """The command `argv` runs ("get", "pod", ...), or None when it names none or asks for help."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg in ("--root", "-n", "--namespace", "--image-store"):
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized by os.get_terminal_size. argparse makes one per
    add_argument, and its own sizing imports shutil (bz2, lzma, fnmatch: 3 ms per command)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS") or os.get_terminal_size().columns)
        except (ValueError, OSError, AttributeError):
            columns = 80
        super().__init__(prog, width=max(columns - 2, 20))


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)


_common: list[argparse.ArgumentParser] = []


def common() -> argparse.ArgumentParser:
    """The global options, which every command and sub-command accepts too."""
    if not _common:
        p = _Parser(add_help=False)
        p.add_argument(
            "--root", default=argparse.SUPPRESS, help=f"state directory (default $NSBOX_ROOT or {DEFAULT_ROOT})"
        )
        p.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="Kubernetes namespace (default: default)")
        p.add_argument(
            "--image-store",
            default=argparse.SUPPRESS,
            metavar="DIR",
            help="image store (default $NSBOX_IMAGE_STORE or /var/lib/nsbox/images)",
        )
        _common.append(p)
    return _common[0]


def subcommand(sub: Any, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    """A sub-command's parser (`pod create`, `create configmap`), with the global options."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common()], **kw)
    return parser


_parsers: dict[str | None, argparse.ArgumentParser] = {}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only` (a command word), that command's part of it. Kept once
    built: the warm command server builds them all before it forks (docs/design.md §11)."""
    key = only if only in MODULES else None
    if key not in _parsers:
        _parsers[key] = _new_parser(key)
    return _parsers[key]


def _new_parser(only: str | None) -> argparse.ArgumentParser:
    words = [only] if only is not None else list(MODULES)
    for word in words:
        __import__(f"nsbox.cli.{MODULES[word]}")  # registers its commands (importlib costs a module more)
    p = _Parser(prog="nsbox", parents=[common()], description="Kubernetes-style pods on one Linux machine.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    for word in words:
        cmd = COMMANDS[word]
        parser = subcommand(sub, word, cmd.help)
        if cmd.arguments is not None:
            cmd.arguments(parser)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    # Everything after the first "--" is the container's command, untouched by option parsing.
    command: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    if command is not None:
        if not hasattr(args, "command"):
            parser.error("unexpected arguments after --")
        args.command = (args.command or []) + command
    args.namespace_given = hasattr(args, "namespace")
    if not hasattr(args, "namespace"):
        args.namespace = "default"
    if not hasattr(args, "root"):
        args.root = os.environ.get("NSBOX_ROOT") or DEFAULT_ROOT
    if not hasattr(args, "image_store"):
        args.image_store = None  # nsbox.images.store_path: $NSBOX_IMAGE_STORE, then the default
    return args


# ---------------------------------------------------------------- running one command


def main(argv: list[str] | None = None) -> NoReturn:
    """The console entry point: run one command and leave without the interpreter's clean-up.

    Tearing down the interpreter (freeing every module and object one by one) costs
    15-20 ms, more than many commands do; the CLI holds nothing that needs it: its
    files are renamed into place and closed, and its locks go with the process.
    """
    os._exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status (usage errors raise SystemExit(2))."""
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if os.geteuid() != 0 and args.cmd != "version":
            raise NsboxError("nsbox must run as root")
        check_names(args)
        code = COMMANDS[args.cmd].run(args)
    except NsboxError as e:
        for line in str(e).splitlines() or ["failed"]:
            print_error(line)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0  # the reader went away: `nsbox get pods | head -1`
    except OSError as e:
        print_error(str(e))  # a full disk under stdout, say
        code = 1
    return _flush(code)


# The arguments that name Kubernetes objects, and the rule each name follows. Every one becomes
# part of a path under the root, so `..` or `/` must never get that far (docs/security.md).
_NAMED_ARGUMENTS = (
    ("pod", "pod name", "subdomain"),
    ("name", "", "subdomain"),  # a pod's, or a ConfigMap's or Secret's
    ("names", "", "subdomain"),
    ("target", "pod name", "subdomain"),
    ("container", "container name", "label"),
)


def check_names(args: argparse.Namespace) -> None:
    """Refuse a namespace or object name that is not what Kubernetes allows, before any
    command uses it: a namespace and a container name are DNS-1123 labels, the names of
    pods, ConfigMaps and Secrets DNS-1123 subdomains (neither can hold `/` or be `..`)."""
    from nsbox import kube

    problem = kube.validate_dns1123_label(args.namespace)
    if problem:
        raise NsboxError(f'invalid namespace "{args.namespace}": {problem}')
    config = args.cmd == "create" or getattr(args, "kind", None) in CONFIG_KINDS
    for attr, what, rule in _NAMED_ARGUMENTS:
        what = what or ("name" if config else "pod name")
        value = getattr(args, attr, None)
        for name in value if isinstance(value, list) else [value] if isinstance(value, str) else []:
            if attr == "target" and name.startswith(("pod/", "pods/")):
                name = name.split("/", 1)[1]
            check = kube.validate_dns1123_label if rule == "label" else kube.validate_dns1123_subdomain
            problem = check(name)
            if problem:
                raise NsboxError(f'invalid {what} "{name}": {problem}')


def _flush(code: int) -> int:
    """Write out what is buffered: output that cannot be written fails the command, a closed pipe does not."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError):
            code = code or 1
    return code
