from avstrain.cli import cli

cli(prog_name="avstrain")
