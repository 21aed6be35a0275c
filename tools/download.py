"""Download a released tarball, MD5 checked (`heldout download`; docs/cli.md)."""

from heldout.cli.main import run_command

run_command("download")
