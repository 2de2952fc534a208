"""The HTTP service (``keytrail serve``): every command, the reads and the audit over HTTP, for services in any language.

``create_app(engine_or_url)`` builds the FastAPI application; the routes, bodies, headers and
problem types are the contract of DESIGN.md section 9. Importing this package loads FastAPI:
``import keytrail`` and the CLI do not, until ``keytrail serve``.
"""

from keytrail.http.app import DEFAULT_MAX_BODY, create_app

__all__ = ["DEFAULT_MAX_BODY", "create_app"]
