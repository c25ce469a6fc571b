"""`integrationsctl`: the operators' command line for the integrations service.

Every verb shows people a view in words (`integrations.views`); `--json` prints the API's
JSON for scripts. Errors print the message, the reason, the details and what to do, and exit
with a documented code (see `ExitCode` and the README).

`main` holds the app and its global options; the verbs live by what they act on:
`integrations` (list, get, create, configure, ... delete), `changes` (watch, events, changes)
and `webhooks` (the `webhooks` sub-app, and `deliveries`). `exits` owns the exit codes and
how a failed call is reported, `output` how an answer is printed.
"""

from integrations.cli.exits import ExitCode, report_error
from integrations.cli.main import app
from integrations.cli.options import Options

# Importing a verb module registers its commands on `app`, and `--help` lists them in the
# order they were registered: hence this order, not the alphabet's.
# isort: off
from integrations.cli import integrations, changes, webhooks  # noqa: F401
# isort: on

__all__ = ["ExitCode", "Options", "app", "report_error"]
