"""Thin Typer commands: parse, call the library, render.

Each command imports the library inside its function, never at module level: ``stg --help``
and ``stg COMMAND --help`` build their text from these modules alone, and must not import torch
(``tests/test_cli.py`` checks it). The values the help shows come from :mod:`stg_cli.defaults`
and the settings' dataclasses, which import nothing heavy.
"""
