"""Helpers shared by the tests (on ``sys.path`` through pyproject's ``pythonpath``); fixtures stay in conftest.py.

- `env`: the checkout's paths, the environment and command of child processes;
- `data`: a tiny YOLO data set;
- `blocks`: the shipped blocks as declared in the block table, and block-level helpers;
- `zoo_builds`: a block in a real YOLO YAML, and a small detector;
- `user_blocks`: blocks a user might write (good and broken ones) for the contract tests;
- `compare_fakes`: fast fakes of training and costs for the comparison tests;
- `child_venv`, `slurm_local`: a child venv with this checkout; a local Slurm cluster when one runs here.
"""
