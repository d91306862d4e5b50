// The spec's original design, agent side: each agent has its own AMQP connection (Nagle
// off), a durable queue bound to the topic exchange `coordination`, manual acks, and
// answers each directive with a persistent completion under publisher confirms; the
// directive is acked once its completion is confirmed.
//   (started by bench/scenarios/rabbitmq.ts: node --import tsx bench/peers/rabbit-agents.ts <url> <count> <run>)
import { connect, type ChannelModel } from "amqplib";
import { EXCHANGE, agentQueue, agentRoute, completionRoute } from "./rabbit-layout.js";

const [url, countText, run] = process.argv.slice(2) as [string, string, string];
const connections: ChannelModel[] = [];

async function agent(i: number): Promise<void> {
  const conn = await connect(url, { noDelay: true });
  connections.push(conn);
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange(EXCHANGE, "topic", { durable: true });
  const queue = agentQueue(run, i);
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, EXCHANGE, `${agentRoute(i)}.#`);
  await ch.prefetch(64);
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    // The completion carries the directive's id; the directive is acked once it is confirmed.
    ch.publish(EXCHANGE, completionRoute(i), msg.content, { persistent: true, messageId: msg.properties.messageId as string }, (err) => {
      if (err) ch.nack(msg);
      else ch.ack(msg);
    });
  }, { noAck: false });
}

await Promise.all(Array.from({ length: Number(countText) }, (_, i) => agent(i)));
process.send?.({ ready: true });
process.on("message", async () => {
  await Promise.all(connections.map((c) => c.close().catch(() => {})));
  process.exit(0);
});
