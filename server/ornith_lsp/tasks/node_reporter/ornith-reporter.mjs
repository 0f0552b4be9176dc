// ornith-lsp's reporter for `node --test`: one JSON object per line for every
// finished test, with the file, line and ancestors the JUnit reporter leaves
// out.  The first line names the format version so a reader can refuse a
// report it does not understand.
const str = (value) => (value === undefined || value === null ? "" : String(value));

export default async function* ornithReporter(source) {
  yield JSON.stringify({ event: "version", format: "ornith-node-test", version: 1, node: process.version }) + "\n";
  const stacks = new Map();
  const stderr = new Map();
  for await (const { type, data } of source) {
    if (type === "test:stderr") {
      // a file that fails to load (a syntax error in the code under test) says why only here
      stderr.set(str(data.file), (stderr.get(str(data.file)) ?? "") + str(data.message));
    } else if (type === "test:start") {
      const stack = stacks.get(str(data.file)) ?? [];
      stack.length = data.nesting;
      stack.push(data.name);
      stacks.set(str(data.file), stack);
    } else if (type === "test:pass" || type === "test:fail") {
      const stack = stacks.get(str(data.file)) ?? [];
      const error = data.details?.error;
      const cause = error?.cause ?? error;
      yield JSON.stringify({
        event: type,
        file: str(data.file),
        line: data.line ?? null,
        column: data.column ?? null,
        name: data.name,
        ancestors: stack.slice(0, data.nesting),
        suite: data.details?.type === "suite",
        skip: data.skip !== undefined && data.skip !== false,
        todo: data.todo !== undefined && data.todo !== false,
        failureType: str(error?.failureType),
        message: cause ? str(cause.message ?? cause) : "",
        stack: cause ? str(cause.stack) : "",
        stderr: type === "test:fail" ? (stderr.get(str(data.file)) ?? "").slice(-4000) : "",
      }) + "\n";
    }
  }
  yield JSON.stringify({ event: "end" }) + "\n";
}
