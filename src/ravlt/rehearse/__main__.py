from ravlt.commands import run_command

from .cli import main

raise SystemExit(run_command(main))
