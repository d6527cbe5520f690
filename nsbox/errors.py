"""One error type for everything a user can be told about.

Anything that goes wrong for a reason the user can act on raises `NsboxError`;
the CLI prints it as a single `error: ...` line and exits 1. Anything else is a
bug and keeps its traceback.
"""


class NsboxError(Exception):
    """A failure to report to the user as one `error:` line."""

    warnings: list[str]  # set by some raisers: warnings about the same input, printed first


class NotFound(NsboxError):
    pass


class AlreadyExists(NsboxError):
    pass


class WaitingForConfig(NsboxError):
    """A container cannot start until a ConfigMap or Secret appears (README, "ConfigMaps,
    Secrets and the downward API"): it waits with `reason`, and is tried again."""

    reason = "ContainerCreating"
