"""The domain's error for a request that conflicts with the current state of the data."""


class ConflictError(Exception):
    """The change cannot be made in the state the data is in now (the API answers 409).

    Raised by the services, with a message for the person who asked: a record still in
    use, an entry already sent, a scheduled change already started.
    """
