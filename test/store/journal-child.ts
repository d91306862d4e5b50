// Commits tasks t<from>..t<to - 1> through the task journal on the configured store, one
// awaited commit a task as the coordinator acknowledges a submit, and prints "acked <n>"
// after each. Then "close" closes the journal (a clean stop) and prints "closed"; "hold"
// prints "holding" and waits to be killed, leaving the WAL as a crashed server would.
//   node --import tsx test/store/journal-child.ts <config.json> <from> <to> <close|hold> [sensitive]
import { create } from "@bufbuild/protobuf";
import { TaskSchema, TaskState } from "../../gen/baton/v1/control_pb.js";
import { buildConfig, configFromFile } from "../../src/config.js";
import { TaskJournal } from "../../src/coordinator/task-journal.js";
import { openConfiguredStore } from "../../src/store/index.js";

const [configPath, from, to, mode, sensitive] = process.argv.slice(2);
if (!configPath || (mode !== "close" && mode !== "hold")) throw new Error("usage: journal-child.ts <config.json> <from> <to> <close|hold> [sensitive]");
const journal = new TaskJournal(await openConfiguredStore(buildConfig(configFromFile(configPath))));
await journal.load();
for (let n = Number(from); n < Number(to); n++) {
  const spec = { taskId: `t${n}`, requiredCapabilities: ["work"], input: { n }, ...(sensitive ? { sensitiveInput: { token: `${sensitive}-${n}` } } : {}) };
  await journal.commit({ tasks: [create(TaskSchema, { spec, state: TaskState.PENDING })] });
  process.stdout.write(`acked ${n}\n`);
}
if (mode === "close") {
  await journal.close();
  process.stdout.write("closed\n");
} else {
  process.stdout.write("holding\n");
  // A referenced timer keeps the process (and its open journal) alive until the kill.
  setInterval(() => {}, 60_000);
}
