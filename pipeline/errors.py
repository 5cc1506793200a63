"""Errors a user can cause and fix."""

import errno


class UsageError(Exception):
    """A problem with the user's input: printed as one sentence, exit code 2, no traceback."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's text (library errors often run to many lines), or its type."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


# How a failed write for lack of room reads where the errno is only in the text (Arrow's IO errors, safetensors'
# SafetensorError) or lost (torch.save's "file write failed").
DISK_FULL_TEXTS = ("No space left", "Disk quota", "File too large", "file write failed")


def is_disk_full(error: BaseException) -> bool:
    """True for a write that failed for lack of room: a full disk, a quota, or a file-size limit."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return isinstance(error, Exception) and any(text in str(error) for text in DISK_FULL_TEXTS)


class RunStopped(Exception):
    """A run that stopped before its end (a SIGTERM): one line saying what was saved, and a non-zero exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
