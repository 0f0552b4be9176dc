// Test only: a PNG of the page a headless chromium shows, over the DevTools
// protocol (node >= 22 has WebSocket built in).
//   node screenshot.mjs DEBUG_PORT OUT.png
import { writeFileSync } from "node:fs";

const [port, out] = process.argv.slice(2);
const pages = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = pages.find((p) => p.type === "page");
if (!page) throw new Error(`no page in ${JSON.stringify(pages)}`);
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = () => reject(new Error("cannot connect to the page"));
});
const answer = new Promise((resolve, reject) => {
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== 1) return;
    if (message.error) reject(new Error(JSON.stringify(message.error)));
    else resolve(message.result);
  };
});
ws.send(JSON.stringify({ id: 1, method: "Page.captureScreenshot", params: { format: "png" } }));
const result = await Promise.race([
  answer,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no screenshot in 20 s")), 20000).unref()),
]);
writeFileSync(out, Buffer.from(result.data, "base64"));
ws.close();
