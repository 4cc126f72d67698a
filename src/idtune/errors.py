"""User-facing errors: one line, no traceback, a chosen exit code."""


class UserError(Exception):
    """A mistake in the user's input or environment; the CLI prints it as one line."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
