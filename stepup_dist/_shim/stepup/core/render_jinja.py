"""`stepup.core.render_jinja` inside a stepup-dist build; `python -m` runs the renderer.

The step that `render_jinja()` makes runs `python3 -m stepup.core.render_jinja ...`.
"""

from stepup_dist.render_jinja import *  # noqa: F403
from stepup_dist.render_jinja import __all__, main  # noqa: F401

if __name__ == "__main__":
    main()
