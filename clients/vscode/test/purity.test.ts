import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

test("src/core and the wire types have no vscode import, so all of it is testable here", () => {
  const src = join(__dirname, "..", "..", "src");
  const files = readdirSync(join(src, "core"))
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(src, "core", f));
  assert.ok(files.length >= 4);
  for (const file of [...files, join(src, "wire.ts")]) {
    const text = readFileSync(file, "utf8");
    assert.doesNotMatch(text, /from ["']vscode(-languageclient[^"']*)?["']|require\(["']vscode/, `${file} imports vscode`);
  }
});
