"""`python -m stepup_dist.worker`: how `build -wN`, `workers --local` and the kits start workers."""

from .serve import main

main()
