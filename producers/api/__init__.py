"""The HTTP ingestion API (FastAPI): `create_app(settings)`, served by `llavaguard api`."""

from producers.api.app import create_app

__all__ = ["create_app"]
