import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { applyFileDiff, changedPaths, DiffError, parseDiff, stat } from "../src/core/diff";

// What the server's ornith.showDiff returns for the CALC repo of tests/agent_repos.py.
const CALC_FIX = `diff --git a/calc.py b/calc.py
index 1b2c3d4..5e6f7a8 100644
--- a/calc.py
+++ b/calc.py
@@ -1,5 +1,5 @@
 def add(a, b):
-    return a - b
+    return a + b
 
 
 def mul(a, b):
`;
const CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";

test("the CALC fix applies to the buffer the editor has", () => {
  const [file] = parseDiff(CALC_FIX);
  assert.equal(file.oldPath, "calc.py");
  assert.equal(file.newPath, "calc.py");
  assert.equal(applyFileDiff(CALC, file), CALC.replace("a - b", "a + b"));
  assert.deepEqual(stat(CALC_FIX), { added: 1, removed: 1 });
  assert.deepEqual(changedPaths(CALC_FIX), ["calc.py"]);
});

test("lines added above the hunk since the fix: it is found where it moved", () => {
  const moved = "import math\n# a comment\n" + CALC;
  assert.equal(applyFileDiff(moved, parseDiff(CALC_FIX)[0]), moved.replace("a - b", "a + b"));
});

test("text that no longer matches is an error, not a guess", () => {
  const edited = CALC.replace("return a - b", "return 0");
  assert.throws(() => applyFileDiff(edited, parseDiff(CALC_FIX)[0]), (e: unknown) => e instanceof DiffError && /does not match/.test((e as Error).message));
});

test("created and deleted files", () => {
  const created = `diff --git a/new.py b/new.py
new file mode 100644
index 0000000..e69de29
--- /dev/null
+++ b/new.py
@@ -0,0 +1,2 @@
+def f():
+    return 1
`;
  const [c] = parseDiff(created);
  assert.equal(c.oldPath, null);
  assert.equal(applyFileDiff("", c), "def f():\n    return 1\n");
  const deleted = `diff --git a/old.py b/old.py
deleted file mode 100644
--- a/old.py
+++ /dev/null
@@ -1 +0,0 @@
-x = 1
`;
  const [d] = parseDiff(deleted);
  assert.equal(d.newPath, null);
  assert.equal(applyFileDiff("x = 1\n", d), "");
});

test("several files, binary changes and quoted paths", () => {
  const diff = `diff --git "a/my file.py" "b/my file.py"
--- "a/my file.py"
+++ "b/my file.py"
@@ -1 +1 @@
-a
+b
diff --git a/img.png b/img.png
Binary files a/img.png and b/img.png differ
`;
  const files = parseDiff(diff);
  assert.deepEqual(changedPaths(diff), ["my file.py", "img.png"]);
  assert.equal(applyFileDiff("a\n", files[0]), "b\n");
  assert.throws(() => applyFileDiff("", files[1]), /binary/);
});

test("a hunk cut short is malformed", () => {
  assert.throws(() => parseDiff("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n"), DiffError);
});

// Round trips through real `git diff`: whatever git writes, the preview must
// reproduce the text git diffed to.
const PAIRS: [string, string, string][] = [
  ["one line changed", "a\nb\nc\n", "a\nB\nc\n"],
  ["no newline at the end, before", "a\nb", "a\nb\nc\n"],
  ["no newline at the end, after", "a\nb\n", "a\nc"],
  ["no newline at either end", "a\nb", "a\nc"],
  ["CRLF kept", "a\r\nb\r\nc\r\n", "a\r\nB\r\nc\r\n"],
  ["two hunks far apart", Array.from({ length: 40 }, (_, i) => `line ${i}`).join("\n") + "\n",
    Array.from({ length: 40 }, (_, i) => (i === 2 ? "second" : i === 35 ? "thirty-five" : `line ${i}`)).join("\n") + "\n"],
  ["insert at the top", "b\nc\n", "a\nb\nc\n"],
  ["append at the end", "a\nb\n", "a\nb\nc\nd\n"],
  ["everything removed", "a\nb\n", ""],
  ["unicode", "naïve = 'ü'\nx = 1\n", "naïve = 'ö'\nx = 1\n"],
];

test("round trips through git diff", () => {
  const dir = mkdtempSync(join(tmpdir(), "ornith-diff-"));
  try {
    for (const [name, before, after] of PAIRS) {
      writeFileSync(join(dir, "before"), before);
      writeFileSync(join(dir, "after"), after);
      const run = spawnSync("git", ["diff", "--no-index", "--no-color", "before", "after"], { cwd: dir, encoding: "utf8" });
      assert.equal(run.status, 1, `${name}: git diff failed: ${run.stderr}`);
      const files = parseDiff(run.stdout);
      assert.equal(files.length, 1, name);
      assert.equal(applyFileDiff(before, files[0]), after, name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
