"""The REST gateway: Falcon resources served by gunicorn, talking to the matchers."""
