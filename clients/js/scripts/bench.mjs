// Round trips of the TypeScript client: `node --experimental-websocket scripts/bench.mjs URL
// TOKEN THREAD N`; prints one JSON list of milliseconds (scripts/bench_clients.py runs it).
import { Gateway } from "../dist/index.js";

const [url, token, threadId, count] = process.argv.slice(2);
const gw = await Gateway.connect(url, token);
const thread = gw.thread(threadId);
await thread.execute("1+1"); // warm: the thread's kernel is leased by its first cell
const times = [];
for (let i = 0; i < Number(count); i++) {
  const began = performance.now();
  const result = await thread.execute("1+1");
  times.push(performance.now() - began);
  if (result.output !== "2\n") throw new Error(`unexpected output ${JSON.stringify(result.output)}`);
}
gw.close();
console.log(JSON.stringify(times));
