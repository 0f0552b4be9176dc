/**
 * The right-hand side of the diff preview: a unified diff (git's, as the server
 * sends it in `ornith.showDiff`) applied to the text the editor has now.
 *
 * Lines are split on "\n" only, as git does, so a "\r" stays part of its line.
 * A hunk whose context no longer matches where it says is looked for nearby
 * (the user may have added lines above it); one that matches nowhere is an
 * error, never a guess.
 */

export type Tag = " " | "-" | "+";

export interface DiffLine {
  tag: Tag;
  text: string;
  /** "\ No newline at end of file" followed this line. */
  noNewline: boolean;
}

export interface Hunk {
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  lines: DiffLine[];
}

export interface FileDiff {
  /** null: the file is created. */
  oldPath: string | null;
  /** null: the file is deleted. */
  newPath: string | null;
  hunks: Hunk[];
  binary: boolean;
}

export class DiffError extends Error {}

const HUNK = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

function unquote(path: string): string {
  if (path.startsWith('"') && path.endsWith('"')) {
    return path.slice(1, -1).replace(/\\(["\\])/g, "$1").replace(/\\t/g, "\t").replace(/\\n/g, "\n");
  }
  return path;
}

function stripPrefix(raw: string): string | null {
  const path = unquote(raw.split("\t")[0].trim());
  if (path === "/dev/null") return null;
  return /^[ab]\//.test(path) ? path.slice(2) : path;
}

/** The path a file diff is about: the new one, or the old one for a deletion. */
export function pathOf(file: FileDiff): string {
  return file.newPath ?? file.oldPath ?? "";
}

export function parseDiff(diff: string): FileDiff[] {
  const files: FileDiff[] = [];
  const lines = diff.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  let file: FileDiff | null = null;
  let hunk: Hunk | null = null;
  let oldLeft = 0;
  let newLeft = 0;

  const startFile = (): FileDiff => {
    const f: FileDiff = { oldPath: null, newPath: null, hunks: [], binary: false };
    files.push(f);
    hunk = null;
    oldLeft = newLeft = 0;
    return f;
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (hunk && (oldLeft > 0 || newLeft > 0)) {
      const tag = line[0];
      if (tag === " " || tag === "-" || tag === "+" || line === "") {
        const t: Tag = line === "" ? " " : (tag as Tag);
        hunk.lines.push({ tag: t, text: line.slice(1), noNewline: false });
        if (t !== "+") oldLeft--;
        if (t !== "-") newLeft--;
        continue;
      }
      if (line.startsWith("\\")) {
        const last = hunk.lines[hunk.lines.length - 1];
        if (last) last.noNewline = true;
        continue;
      }
      throw new DiffError(`malformed hunk at line ${i + 1}: ${JSON.stringify(line.slice(0, 60))}`);
    }
    if (line.startsWith("\\") && hunk) {
      const last = hunk.lines[hunk.lines.length - 1];
      if (last) last.noNewline = true;
      continue;
    }
    if (line.startsWith("diff --git ")) {
      file = startFile();
      const m = /^diff --git (?:"?a\/)(.+?)"? (?:"?b\/)(.+?)"?$/.exec(line);
      if (m) {
        file.oldPath = unquote(m[1]);
        file.newPath = unquote(m[2]);
      }
      continue;
    }
    if (line.startsWith("--- ")) {
      if (!file || file.hunks.length > 0) file = startFile();
      file.oldPath = stripPrefix(line.slice(4));
      continue;
    }
    if (line.startsWith("+++ ")) {
      if (!file) file = startFile();
      file.newPath = stripPrefix(line.slice(4));
      continue;
    }
    if (file && line.startsWith("new file mode")) {
      file.oldPath = null;
      continue;
    }
    if (file && line.startsWith("deleted file mode")) {
      file.newPath = null;
      continue;
    }
    if (file && line.startsWith("rename from ")) {
      file.oldPath = unquote(line.slice("rename from ".length));
      continue;
    }
    if (file && line.startsWith("rename to ")) {
      file.newPath = unquote(line.slice("rename to ".length));
      continue;
    }
    if (file && (line.startsWith("Binary files ") || line.startsWith("GIT binary patch"))) {
      file.binary = true;
      continue;
    }
    const m = HUNK.exec(line);
    if (m) {
      if (!file) throw new DiffError(`hunk without a file header at line ${i + 1}`);
      hunk = {
        oldStart: Number(m[1]),
        oldLines: m[2] === undefined ? 1 : Number(m[2]),
        newStart: Number(m[3]),
        newLines: m[4] === undefined ? 1 : Number(m[4]),
        lines: [],
      };
      oldLeft = hunk.oldLines;
      newLeft = hunk.newLines;
      file.hunks.push(hunk);
      continue;
    }
    // index, mode, similarity lines and anything else between files: not needed here
  }
  if (hunk && (oldLeft > 0 || newLeft > 0)) throw new DiffError("the diff ends inside a hunk");
  return files;
}

function splitText(text: string): { lines: string[]; finalNewline: boolean } {
  if (text === "") return { lines: [], finalNewline: false };
  const lines = text.split("\n");
  const finalNewline = lines[lines.length - 1] === "";
  if (finalNewline) lines.pop();
  return { lines, finalNewline };
}

function matchesAt(lines: string[], at: number, expected: string[]): boolean {
  if (at < 0 || at + expected.length > lines.length) return false;
  for (let k = 0; k < expected.length; k++) if (lines[at + k] !== expected[k]) return false;
  return true;
}

/** Where `expected` starts, nearest to `want` first; -1 when nowhere. */
function locate(lines: string[], want: number, expected: string[], from: number): number {
  const limit = Math.max(lines.length, want) + 1;
  for (let d = 0; d <= limit; d++) {
    for (const at of d === 0 ? [want] : [want - d, want + d]) {
      if (at >= from && matchesAt(lines, at, expected)) return at;
    }
  }
  return -1;
}

/** Apply one file's hunks to `text`; throws DiffError when a hunk does not fit. */
export function applyFileDiff(text: string, file: FileDiff): string {
  if (file.binary) throw new DiffError(`${pathOf(file)}: binary change, no text preview`);
  if (file.newPath === null) return "";
  const { lines, finalNewline } = splitText(file.oldPath === null ? "" : text);
  const out: string[] = [];
  let cursor = 0; // next unread line of `lines`
  let offset = 0; // how far the text has moved since the diff was made
  let endsWithNewline = finalNewline;
  for (const hunk of file.hunks) {
    const expected = hunk.lines.filter((l) => l.tag !== "+").map((l) => l.text);
    const want = (hunk.oldLines === 0 ? hunk.oldStart : hunk.oldStart - 1) + offset;
    const at = expected.length === 0 ? Math.min(Math.max(want, cursor), lines.length) : locate(lines, want, expected, cursor);
    if (at < 0) {
      throw new DiffError(
        `${pathOf(file)}: the hunk at line ${hunk.oldStart} does not match the text any more; run the fix again`,
      );
    }
    offset = at - (hunk.oldLines === 0 ? hunk.oldStart : hunk.oldStart - 1);
    out.push(...lines.slice(cursor, at));
    for (const l of hunk.lines) if (l.tag !== "-") out.push(l.text);
    cursor = at + expected.length;
    if (cursor >= lines.length) {
      const lastNew = [...hunk.lines].reverse().find((l) => l.tag !== "-");
      endsWithNewline = lastNew ? !lastNew.noNewline : finalNewline;
    }
  }
  out.push(...lines.slice(cursor));
  if (out.length === 0) return "";
  return out.join("\n") + (endsWithNewline ? "\n" : "");
}

/** The workspace-relative paths a diff touches, in order. */
export function changedPaths(diff: string): string[] {
  return parseDiff(diff).map(pathOf);
}

/** Lines added and removed, as the server's "apply verified fix (+N -M)" counts them. */
export function stat(diff: string): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const file of parseDiff(diff)) {
    for (const hunk of file.hunks) {
      for (const l of hunk.lines) {
        if (l.tag === "+") added++;
        else if (l.tag === "-") removed++;
      }
    }
  }
  return { added, removed };
}
