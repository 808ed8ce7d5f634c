"""stepup-dist: StepUp-style builds whose steps run on RQ workers through Redis."""
