"""The error of the user's own making (a file, a flag, a checkpoint): every command reports it as
one ``error:`` line, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints): reported in one line."""
