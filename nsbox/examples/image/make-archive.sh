#!/usr/bin/env bash
# make-archive.sh - build busybox.tar, an OCI image of the host's busybox-static, offline.
#
# What it shows: an image is only files and JSON. Two layers (a tiny /etc and
# /tmp, then /bin/busybox with its applet links) are tarred and gzipped,
# named by their sha256, described by an image config and a manifest, and
# laid out as an OCI image layout; `skopeo copy` then packs that layout into
# one oci-archive tagged localhost/busybox:1.35. No registry, no internet.
#
# Run it (needs busybox-static, skopeo, GNU tar, gzip, sha256sum, python3):
#   cd examples/image
#   ./make-archive.sh                        # writes ./busybox.tar (or the path given as $1)
#   skopeo inspect oci-archive:busybox.tar   # the image, as any OCI tool sees it
#   sudo nsbox image load -i busybox.tar
#   sudo nsbox apply -f pod.yaml
#   sudo nsbox logs image-demo -c from-image     # "hello from the image"
#   sudo nsbox logs image-demo -c with-command   # "hello from a command", then `id`
#   sudo nsbox delete pod image-demo
set -euo pipefail

OUT=${1:-busybox.tar}
NAME=localhost/busybox:1.35
BUSYBOX=/bin/busybox
APPLETS=(sh echo cat sleep ls id env pwd touch rm test wc true false mkdir hostname ps kill nc wget httpd)
MTIME=@1700000000   # one date for every file: the same inputs give the same digests

die() { echo "error: $*" >&2; exit 1; }
for tool in skopeo tar gzip sha256sum python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing (apt-get install busybox-static)"
# A busybox linked against libc would find no libc in the image (readelf is in binutils).
if command -v readelf >/dev/null && LC_ALL=C readelf -l "$BUSYBOX" | grep -q "program interpreter"; then
    die "$BUSYBOX is dynamically linked (apt-get install busybox-static)"
fi

case $(uname -m) in  # the image-spec names architectures as Go does
    x86_64) ARCH=amd64 ;;
    aarch64) ARCH=arm64 ;;
    *) ARCH=$(uname -m) ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/make-archive.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256"

# blob FILE -> prints "sha256:HEX SIZE" and stores FILE as blobs/sha256/HEX
blob() {
    local hex
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$LAYOUT/blobs/sha256/$hex"
    echo "sha256:$hex $(stat -c %s "$1")"
}

# layer DIR NAME -> a reproducible tar.gz of DIR's contents; prints "DIGEST SIZE DIFF_ID"
layer() {
    local dir=$1 tar=$WORK/$2.tar
    (cd "$dir" && tar --sort=name --mtime="$MTIME" --owner=0 --group=0 --numeric-owner \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$tar" -- *)
    local diff_id
    diff_id=sha256:$(sha256sum "$tar" | cut -d' ' -f1)
    gzip -n -9 "$tar"
    echo "$(blob "$tar.gz") $diff_id"
}

# Layer 1: the users and directories a Unix program expects.
BASE=$WORK/base
mkdir -p "$BASE/etc" "$BASE/tmp" "$BASE/root"
chmod 1777 "$BASE/tmp"
chmod 700 "$BASE/root"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$BASE/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$BASE/etc/group"

# Layer 2: busybox and one symlink per applet.
BIN=$WORK/busybox
mkdir -p "$BIN/bin"
cp "$BUSYBOX" "$BIN/bin/busybox"
chmod 755 "$BIN/bin/busybox"
for applet in "${APPLETS[@]}"; do ln -s busybox "$BIN/bin/$applet"; done

read -r BASE_DIGEST BASE_SIZE BASE_DIFF < <(layer "$BASE" base)
read -r BIN_DIGEST BIN_SIZE BIN_DIFF < <(layer "$BIN" busybox)

# The image config: platform, what runs by default (Cmd), the layers' uncompressed digests.
python3 - "$WORK/config.json" "$ARCH" "$BASE_DIFF" "$BIN_DIFF" <<'PY'
import json, sys
path, arch, *diff_ids = sys.argv[1:]
created = "2023-11-14T22:13:20Z"
config = {
    "created": created,
    "architecture": arch,
    "os": "linux",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh", "-c", "echo hello from the image; sleep 3600"],
        "WorkingDir": "/",
    },
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [
        {"created": created, "created_by": "/etc/passwd, /etc/group, /tmp, /root"},
        {"created": created, "created_by": "COPY /bin/busybox and its applet links"},
    ],
}
with open(path, "w") as f:
    json.dump(config, f, sort_keys=True)
PY
read -r CONFIG_DIGEST CONFIG_SIZE < <(blob "$WORK/config.json")

# The manifest names the config and the layers, bottom first.
cat >"$WORK/manifest.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "$CONFIG_DIGEST", "size": $CONFIG_SIZE},
 "layers": [
  {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "$BASE_DIGEST", "size": $BASE_SIZE},
  {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "$BIN_DIGEST", "size": $BIN_SIZE}]}
JSON
read -r MANIFEST_DIGEST MANIFEST_SIZE < <(blob "$WORK/manifest.json")

# The layout's entry point: index.json names the manifest by a tag.
echo '{"imageLayoutVersion": "1.0.0"}' >"$LAYOUT/oci-layout"
cat >"$LAYOUT/index.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
 "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "$MANIFEST_DIGEST",
   "size": $MANIFEST_SIZE, "annotations": {"org.opencontainers.image.ref.name": "1.35"}}]}
JSON

rm -f "$OUT"
skopeo copy --quiet "oci:$LAYOUT:1.35" "oci-archive:$OUT:$NAME"
echo "wrote $OUT: $NAME ($ARCH), manifest $MANIFEST_DIGEST"
