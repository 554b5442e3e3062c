"""The one exception for a user's mistake: bad input, settings or environment, not a bug."""


class UserError(ValueError):
    """Printed by a command line as ``error: <message>``, exit status 2.

    ``field``: the setting the message begins with, so that a command line can say its flag instead.
    """

    def __init__(self, message: str, field: "str | None" = None):
        super().__init__(message)
        self.field = field if field and message.startswith(field) else None

    def naming(self, name: str) -> str:
        """The message with ``name`` (a flag) in place of the field it begins with."""
        text = str(self)
        return name + text[len(self.field):] if self.field else text
