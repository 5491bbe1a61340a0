"""Security tests: signing, rate limits, hostile originals and paths, fuzzing."""

from flask.testing import FlaskClient


class BufferedClient(FlaskClient):
    """A test client that reads each answer whole and closes it, as a WSGI server does.

    A cached variant is sent from its open file; a server closes it once sent,
    and so does this client, so no test leaks a file handle.
    """

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def client_of(app):
    app.test_client_class = BufferedClient
    return app.test_client()
