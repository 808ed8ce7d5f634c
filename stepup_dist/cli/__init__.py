"""`stepup-dist`: what runs where the user types. The commands (`commands.py`), a build with
its embedded server and local workers (`build.py`), the workers started on demand
(`fleet.py`, `slurm.py`), the server's status and pools (`admin.py`), and the console
output with its live status line (`console.py`, `status_line.py`).
"""

__all__ = ("cli", "main")

from .commands import cli, main
