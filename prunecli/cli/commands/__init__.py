"""One module per sub-command; each exposes a click command named ``command``.

``prunecli.cli.main`` discovers them, so adding a command is adding a file here, plus its line in
the README's command list (``python scripts/readme_commands.py --write`` regenerates the list;
tests/test_readme.py fails while a registered command is missing from it).
"""
