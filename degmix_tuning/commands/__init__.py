"""Subcommands of `degmix-tuning`; one module per command group, each with `register(subparsers)`."""
