"""One module per sub-command; each exposes a click command named ``command``.

``prunecli.cli.main`` discovers them, so adding a command is adding a file here.
"""
