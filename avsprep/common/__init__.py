"""Plumbing shared by avsprep and avstrain, with no knowledge of any dataset layout:
domain errors (``errors``), findings and the one registry of finding codes (``findings``),
atomic writes (``atomic``), the CLI kit (``clikit``) and the one image opener (``images``)."""
