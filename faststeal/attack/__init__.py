"""Model extraction: query sets bought from a target's oracle, training an attack GAN (the thief), rejection
sampling with the target's discriminator, and fidelity curves. The commands that run them live in
``faststeal.runs``; the oracle itself, the target's side of the black box, in ``faststeal.targets.oracle``."""
