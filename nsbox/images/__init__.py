"""OCI images: layers unpacked into directories, a container root an overlay of them (docs/images.md)."""
