import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def built():
    """Each registered model at its paper's input size, built once per session."""
    import kzoo

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = kzoo.create_model(name)
        return cache[name]

    return get
