"""The project's own error: input it cannot use (arguments, files, corpora, checkpoints)."""


class MusicrnnError(ValueError):
    """Bad input, said in one line. Every command prints it as ``error: <message>`` and exits with
    ``exit_code`` (2, argparse's code for usage errors); anything else is a bug and shows its traceback.
    A ``ValueError`` so that code which caught the ``ValueError``s these used to be still works."""

    exit_code = 2
