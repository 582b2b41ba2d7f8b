from tests.integration.conftest import server  # noqa: F401  (the same running-server fixture)
