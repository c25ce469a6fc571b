"""`python -m integrations.cli`: the same as the `integrationsctl` script."""

from integrations.cli import app

app()
