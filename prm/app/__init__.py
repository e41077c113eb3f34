"""The application layer: the `prm` command line (`prm.app.cli`), one module per subcommand,
and the demo. Nothing below this layer imports it."""
