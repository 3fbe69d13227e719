pytest_plugins = ["tests.fixtures_tiny"]
