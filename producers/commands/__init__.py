"""The producer-side `llavaguard` subcommands (submit, get, api, audit, export); each module has `register(subparsers)`.

They live here, not in worker/commands, because they drive producers (the SDK, the HTTP API, bulk audits,
export) and `worker` never imports `producers`. producers/cli.py assembles these and worker's commands.
"""
