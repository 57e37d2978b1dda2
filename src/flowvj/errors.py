"""The one exception type users see.

A UserError carries a single line saying what was wrong, where (file or flag) and what was
expected. The CLI prints it without a traceback and exits with status 2; anything else that
escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, a corrupt checkpoint, a wrong flag value."""
