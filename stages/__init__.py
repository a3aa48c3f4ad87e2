"""One thin module per dvc.yaml stage: read its params section, call the library, write outputs.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int``; ``stages.cli`` turns them
into the ``avs`` subcommands. Nothing imports this package except the CLI.
"""
