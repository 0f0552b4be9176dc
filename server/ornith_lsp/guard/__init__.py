"""The reward-hacking guard: nothing reaches the user unless it passes three layers.

1. ``boundary``: tests, their data and configuration, CI, ``ornith.toml`` and
   ``.git`` are read-only (REWARD_HACKING.md section A).  It bends only where a
   check stands behind it (``testdiff``): new files of the test tree that leave
   the existing suite alone, and an edit of the task's own test file that leaves
   every test as it was; grading then compares the collected test ids.
2. ``monitors`` + ``grading``: static monitors over the change for the
   program-side cheats and suppressions (sections B and C) -- an added
   suppression put to ruff or mypy (``suppressions``) -- and the target
   tests run on pristine tests in a fresh process.
3. ``judge``: an optional frozen model with a veto.

How the agent uses it, so that the editor, CI and ``guard check`` share one
code path:

- its edit tool asks ``Boundary.check_edit(path, new_file=...)`` before writing
  and hands a refusal to the model as the tool's answer;
- its run tool asks ``monitors.check_command(cmd)`` before running a command
  (git history leaves no trace in a diff);
- its verification step calls ``check.acheck_diff`` (or ``grading.agrade`` on its
  own shadow tree with the checkpoint as base); a blocked verdict is never
  applied, ``Verdict.for_model(budget)`` tells the model which rule it broke,
  and ``Verdict.to_dict()`` feeds the report and the editor.

The guard judges a diff and a tree, whoever produced them, and never imports
the agent or the LSP layer.
"""
