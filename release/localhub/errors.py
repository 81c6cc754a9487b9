"""The one error type of the local hub: an HTTP answer in the Hub's shape."""


class HubError(Exception):
    """An HTTP error in the Hub's shape: status, {"error": message} and an optional X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class StoreLocked(RuntimeError):
    """Another process serves this store root (one server per root)."""
