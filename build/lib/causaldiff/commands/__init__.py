"""The ``causaldiff`` subcommands that are not training: one module each, with ``register(subparsers)`` adding its
parser and ``run(args)`` doing the work. Heavy imports (torch, the model) happen inside ``run`` so that
``causaldiff --help`` and the light commands start fast."""
