"""The runs: each command's orchestration (extract, sweep, transfer, defend, verify-eval) and the run object
they work through (``experiment.Experiment``), above the library. Nothing in the domain packages
(attack, defense, ownership, metrics, models, serve, targets) imports from here."""
