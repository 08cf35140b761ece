"""The error type for mistakes a user can fix: the CLI prints it as one red line."""


class UserError(Exception):
    """Bad input: a missing file, an unknown option value, a malformed annotation."""
