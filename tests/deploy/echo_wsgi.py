"""A bare WSGI app that answers with REMOTE_ADDR (for the PROXY protocol spoofing test)."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["REMOTE_ADDR"].encode()]
