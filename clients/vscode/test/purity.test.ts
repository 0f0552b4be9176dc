import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

test("src/core has no vscode import, so all of it is testable here", () => {
  const dir = join(__dirname, "..", "..", "src", "core");
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  assert.ok(files.length >= 5);
  for (const file of files) {
    const text = readFileSync(join(dir, file), "utf8");
    assert.doesNotMatch(text, /from ["']vscode(-languageclient[^"']*)?["']|require\(["']vscode/, `${file} imports vscode`);
  }
});
