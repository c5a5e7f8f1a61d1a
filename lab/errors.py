"""One hierarchy of user errors, low in the stack so every stage can raise them.

A :class:`LabError` is something the user can fix (a bad row, config, template, folder, server
answer or cache entry); its message is one line naming the file (and line or key) and the fix.
The CLI prints ``error: <message>`` and exits 2 for these and only these: any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations


class LabError(Exception):
    """A user error: the message names what is wrong, where, and how to fix it."""


class ConfigError(LabError, ValueError):
    """A config or experiment file has an unknown key or a bad value."""


class DataError(LabError, ValueError):
    """A data file or row cannot be read as preference pairs."""


class PromptError(LabError, ValueError):
    """A prompt template cannot be found or rendered."""


class BackendError(LabError, RuntimeError):
    """A backend cannot be built or cannot answer; the message says how to fix it."""


class ModelError(LabError, RuntimeError):
    """A catalog model cannot be installed or assembled."""


class RunError(LabError, RuntimeError):
    """A run folder, sweep folder or cache cannot be used as asked."""
