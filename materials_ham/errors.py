"""One exception hierarchy for materials-ham.

Every error a user can cause (bad structure, bad file, failed engine run, invalid
sample) derives from :class:`MaterialsHamError`.  The CLI maps these to a one-line
message and a non-zero exit code; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class MaterialsHamError(Exception):
    """Base class of all expected, user-facing errors."""

    exit_code = 1

    def __init__(self, message: str, *, subject: str | None = None):
        self.subject = subject
        super().__init__(f"{subject}: {message}" if subject else message)


class StructureError(MaterialsHamError):
    """A structure is unreadable, out of scope, or unphysical."""

    exit_code = 2


class FormatError(MaterialsHamError):
    """A file does not follow the format it claims (sample, store, predictions)."""

    exit_code = 3


class EngineError(MaterialsHamError):
    """The DFT engine cannot treat a structure or its run failed (e.g. no SCF convergence)."""

    exit_code = 4


class ValidationFailed(MaterialsHamError):
    """A sample failed one or more physical validation checks."""

    exit_code = 5


class HubError(MaterialsHamError):
    """A Hugging Face Hub operation failed: repo or revision not found, no access, network down,
    or data not in the cache while offline."""

    exit_code = 6


class SubmissionError(MaterialsHamError):
    """A leaderboard submission is refused: invalid or hostile metadata, files outside the
    submission, a checksum mismatch, or stored metrics that trusted re-scoring does not reproduce."""

    exit_code = 7
