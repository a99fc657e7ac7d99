"""thinwire.Error: every failure of the library, with the code of thinwire::ErrorCode."""

CODES = ("invalid_argument", "mismatch", "timeout", "transport_error", "unsupported", "internal")


class Error(RuntimeError):
    """A thinwire failure. ``code`` is one of CODES; ``str(e)`` names the component, the rank
    and what was expected, e.g. "thinwire agreement error [rank 1]: ...".
    """

    def __init__(self, message, code="internal"):
        super().__init__(message)
        self.code = code if code in CODES else "internal"

    def __reduce__(self):  # picklable, e.g. across multiprocessing
        return (type(self), (str(self), self.code))
