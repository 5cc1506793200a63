"""Errors a user can cause and fix."""

import errno


class UsageError(Exception):
    """A problem with the user's input: printed as one sentence, exit code 2, no traceback."""


def is_disk_full(error: BaseException) -> bool:
    """True for a write that failed for lack of room: a full disk, a quota, or a file-size limit."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    # Arrow's IO errors carry the errno only in their text.
    return isinstance(error, OSError) and any(s in str(error) for s in ("No space left", "Disk quota", "File too large"))
