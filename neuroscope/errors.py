"""The one exception type for bad input: its message is one line, shown to the user as is.

Every layer raises UserError (or a subclass) for input a user can fix, naming the library's own
parameter (`param`) where one is at fault; the CLI turns it into `Error: <message>` and exit code 1,
without a traceback, and names the matching command-line option. Anything else is a bug.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a file, an option, a text); the message is one line.

    param: the name of the library parameter at fault ("streams", "force", ...), or None; the CLI maps
    it to its flag, so the library never speaks in flags.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param
