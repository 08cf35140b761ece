"""Thin Typer commands: parse, call the library, render."""
