"""Image commands: `image pull|load|ls|rm|prune` and `images` (as podman's)."""

from __future__ import annotations

from nsbox.cli import command, print_error, print_object, subcommand

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    import argparse

    from nsbox.images import Image, Store


def store(args: argparse.Namespace) -> Store:
    from nsbox.images import Store, store_path

    return Store(store_path(args.image_store))


def ls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="image ids only")
    p.add_argument("-o", "--output", choices=["json"], help="output format")


def image_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="image_cmd", metavar="SUBCOMMAND")
    sub.required = True
    subcommand(sub, "pull", "pull an image from a registry").add_argument("ref", metavar="REF")
    load = subcommand(sub, "load", "load the images of an oci-archive or docker-archive file")
    load.add_argument("-i", "--input", required=True, metavar="FILE", help="the archive (podman/docker save)")
    ls_flags(subcommand(sub, "ls", "list images", aliases=["list"]))
    subcommand(sub, "rm", "remove images", aliases=["remove"]).add_argument("refs", nargs="+", metavar="REF")
    subcommand(sub, "prune", "remove the layers and blobs no image or pod uses")


@command("image", "image commands (pull, load, ls, rm, prune)", image_arguments)
def cmd_image(args: argparse.Namespace) -> int:
    return {
        "pull": pull,
        "load": load,
        "ls": ls,
        "list": ls,
        "rm": rm,
        "remove": rm,
        "prune": prune,
    }[args.image_cmd](args)


@command("images", "list images (image ls)", ls_flags)
def cmd_images(args: argparse.Namespace) -> int:
    return ls(args)


def pull(args: argparse.Namespace) -> int:
    image, copied = store(args).fetch(args.ref)
    print(f"{'Downloaded newer image' if copied else 'Image is up to date'} for {image.name}")
    print(f"Digest: {image.repo_digest.rpartition('@')[2]}")
    print(f"Image ID: {image.id}")
    return 0


def load(args: argparse.Namespace) -> int:
    for image in store(args).load(args.input):
        print(f"Loaded image: {image.name or image.id}")
    return 0


def short(digest: str) -> str:
    """The 12 hex digits podman shows of an id or digest."""
    return digest.split(":", 1)[-1][:12]


def human_size(size: int) -> str:
    """Decimal units with three significant digits, as podman and docker print sizes ("4.52 MB")."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if float(f"{value:.3g}") < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} TB"


def repository_and_tag(image: Image) -> tuple[str, str]:
    if not image.name:
        return "<none>", "<none>"
    name = image.name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "<none>"


def ls(args: argparse.Namespace) -> int:
    images = store(args).images()
    if args.output == "json":
        from nsbox.images.store import describe

        print_object({"images": [describe(i) for i in images]}, "json", sort_keys=False)
        return 0
    if args.quiet:
        for image_id in dict.fromkeys(short(i.id) for i in images):
            print(image_id)
        return 0
    rows = [["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "SIZE"]]
    for i in images:
        digest = i.repo_digest.rpartition("@")[2] or i.digest
        rows.append([*repository_and_tag(i), f"sha256:{short(digest)}", short(i.id), human_size(i.size)])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def rm(args: argparse.Namespace) -> int:
    from nsbox.errors import NsboxError

    s, code = store(args), 0
    for ref in args.refs:
        before = s.images()
        try:
            image = s.remove(ref)
        except NsboxError as e:
            print_error(str(e))
            code = 1
            continue
        after = s.images()
        for name in sorted({i.name for i in before if i.name} - {i.name for i in after}):
            print(f"Untagged: {name}")
        if all(i.id != image.id for i in after):
            print(f"Deleted: {image.id}")
    return code


def prune(args: argparse.Namespace) -> int:
    layers, freed = store(args).prune()
    print(f"Removed {layers} unused layer{'s' if layers != 1 else ''}")
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0
