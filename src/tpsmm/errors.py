"""Errors that the command line turns into one line and a non-zero exit.

Raise these where the problem is known, with the file and the fix in the
message; anything else is a bug and keeps its traceback.
"""


class TPSMMError(Exception):
    """Base class of every error that is the user's input, not our bug."""


class ConfigError(TPSMMError):
    """A config file is unreadable, has unknown keys or misses required ones."""


class CheckpointError(TPSMMError):
    """A checkpoint cannot be read or does not fit the config."""


class InputError(TPSMMError):
    """An input image, video or dataset cannot be read or used."""


class OutputError(TPSMMError):
    """An output path cannot be written."""


class MissingExtraError(TPSMMError):
    """A feature needs an optional package that is not installed; the message says which
    ``pip install 'tpsmm[extra]'`` brings it."""
