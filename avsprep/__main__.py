from avsprep.cli import cli

cli(prog_name="avsprep")
