"""The one exception type for bad input: its message is one line, shown to the user as is.

Every layer raises UserError (or a subclass) for input a user can fix; the CLI turns it into
`Error: <message>` and exit code 1, without a traceback. Anything else is a bug.
"""


class UserError(ValueError):
    """Bad input from the user (a file, an option, a text); the message is one line."""
