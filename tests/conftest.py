"""Test-suite configuration: ``pytester`` runs the pytest plugin's tests."""

pytest_plugins = ["pytester"]
