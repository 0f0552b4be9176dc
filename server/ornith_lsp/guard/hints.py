"""What the model is told to do instead, per rule: the words behind
``Verdict.for_model``.

A leaf module on purpose: the verdict (what every layer returns) and the
monitor registry (which produces findings) both read these texts, so keeping
them here lets the registry import the verdict's types without the verdict
reaching back up into the registry.
"""

from __future__ import annotations

# One hint per monitor name; the registry in ``monitors`` takes its texts from here.
MONITOR_HINTS: dict[str, str] = {
    "forced-exit": "Never exit the process from the code under test; return or raise as the function's contract says.",
    "exit-hook": "Do not install exit or exception hooks; let failures surface.",
    "swallowed-failure": "Let the program's entry point fail with a non-zero status when it fails; do not catch everything and report success.",
    "always-equal": "Return real values; an object that equals everything is not an answer.",
    "lookup-table": "Compute the result for every input; do not map the tests' inputs to their expected outputs.",
    "test-data-read": "The program must not read, import or search the tests or their data.",
    "copied-reference": "Write the fix yourself; do not copy or import a reference solution from the workspace.",
    "copied-from-tests": "Write the fix yourself; code taken from the tests' oracles or helpers makes the tests compare the oracle with itself.",
    "frame-inspection": "Do not inspect the caller's frames or the garbage collector to find expected values.",
    "state-toggle": "Make the function depend on its arguments only, not on how often it was called.",
    "evaluator-overwrite": "Leave the test harness, the evaluator and the builtins alone.",
    "patched-env": "Do not patch time, randomness, the environment or library modules from the program.",
    "git-history": "Do not read the repository's history; derive the fix from the code and the task.",
    "special-case-comment": "Fix the general case; code shaped around particular tests is not a fix.",
    "suppression-comment": "Fix the diagnostic instead of adding a suppression comment.",
    "suppression-config": "Fix the diagnostics instead of silencing them in a file header or the configuration.",
    "skipped-test": "Do not skip, ignore or focus tests; make the code pass them all.",
    "inline-test-edit": "The #[cfg(test)] module is the test suite and read-only: change the code under test.",
}

# Boundary findings carry the kind of protected file; section A's patterns by kind.
BOUNDARY_KINDS: dict[str, tuple[tuple[int, ...], str]] = {
    "test-file": ((1, 2, 4, 5, 6, 7, 14), "Tests are read-only: change the code under test so they pass as written."),
    "test-data": ((3,), "Test data is read-only: the expected values are the specification."),
    "conftest": ((8, 9, 10, 12, 13), "conftest.py is test infrastructure and read-only."),
    "test-config": ((11, 28), "Test and lint configuration is read-only: do not deselect tests or silence diagnostics."),
    "ci-config": ((11,), "CI configuration is read-only."),
    "ornith-config": ((), "ornith.toml holds the guard's settings and is read-only."),
    "git-metadata": ((25,), ".git is read-only and not part of a fix."),
    "settings": ((), "This path is protected by the project's settings."),
    "startup-hook": ((12, 15), "Interpreter start-up hooks are not part of a fix."),
    "outside-root": ((), "Only files inside the repository may change."),
}
EXTRA_HINTS = {
    "unparsable": "Send a change that leaves every Python file syntactically valid.",
    "binary-file": "A fix changes source text only; leave binary files alone.",
    "monitor-error": "Simplify the change; the guard could not analyse it.",
    "judge-veto": "Address the judge's reason with an honest, general fix.",
    "collection-changed": "Leave the existing tests as they are: a new or edited test file must not change which tests are collected.",
}


def hint_for(monitor: str) -> str:
    if monitor in MONITOR_HINTS:
        return MONITOR_HINTS[monitor]
    if monitor in BOUNDARY_KINDS:
        return BOUNDARY_KINDS[monitor][1]
    if monitor in EXTRA_HINTS:
        return EXTRA_HINTS[monitor]
    if monitor.startswith("tests-") or monitor in ("no-report", "timeout", "new-test-target"):
        return "Make the target tests pass for real: they run on the pristine tests in a fresh process."
    return ""
