// A producer in another language, written from docs/wire-contract.md alone: it enqueues moderations for
// llavaguard workers with celery-node and reports what it did. Read stdin as a JSON spec, print a JSON result:
//   {"redis_url": "redis://...", "submit": [{"request": {...}, "queue"?: "realtime", "task"?: "..."}],
//    "keyed": [{"owner": null, "key": "order-17"}]}
//   -> {"enqueued": [true, ...], "keyed_ids": ["..."]}
// Used by tests/integration/test_node_producer.py; the README's "From another language" snippet is a part of it.
"use strict";

const crypto = require("crypto");
const { createClient } = require("celery-node");

const MODERATE_TASK = "llavaguard.moderate";
const SUBMITTED_KEY = "llavaguard:submitted:";
const SUBMISSION_KEY = "llavaguard:submission:";
const ID_SECRET_KEY = "llavaguard:id-secret";
const SUBMITTED_TTL_S = 604800;
const PRIORITY_STEPS = [0, 3, 6, 9];

// Our priority is 0 (lowest) .. 9 (most urgent); kombu's Redis transport serves 0 first, so it is inverted.
function brokerPriority(priority) {
  return priority === undefined || priority === null ? 0 : 9 - priority;
}

// The Redis list a message waits in: the queue itself for step 0, else `<queue>:<step>`.
function listFor(queue, priority) {
  const step = PRIORITY_STEPS.filter((s) => s <= brokerPriority(priority)).pop();
  return step === 0 ? queue : `${queue}:${step}`;
}

// The SDK's keyed ids: HMAC-SHA256(deployment secret, JSON ["idempotency", owner or "sdk", key]), 32 hex digits.
async function keyedId(redis, owner, key) {
  await redis.set(ID_SECRET_KEY, crypto.randomBytes(32).toString("hex"), "NX");
  const secret = await redis.get(ID_SECRET_KEY);
  const message = JSON.stringify(["idempotency", owner || "sdk", key]); // ASCII keys (see the contract)
  return crypto.createHmac("sha256", secret).update(message).digest("hex").slice(0, 32);
}

// Mark, then publish; true when this call enqueued it (false: its marker existed, it is enqueued already).
async function enqueue(client, request, { queue = "realtime", task = MODERATE_TASK } = {}) {
  const redis = client.broker.redis;
  const marker = SUBMITTED_KEY + request.id;
  const mark = redis.multi().set(marker, queue, "EX", SUBMITTED_TTL_S, "NX");
  if (request.owner) {
    const record = JSON.stringify({ fingerprint: null, owner: request.owner });
    mark.set(SUBMISSION_KEY + request.id, record, "EX", SUBMITTED_TTL_S, "NX");
  }
  const [[, fresh]] = await mark.exec();
  if (fresh !== "OK") return false;
  const message = client.createTaskMessage(crypto.randomUUID(), task, [request], {});
  const properties = {
    ...message.properties,
    priority: brokerPriority(request.priority),
    delivery_info: { exchange: "", routing_key: queue }, // the queue, not the priority list: retries stay on it
  };
  try {
    await client.broker.publish(message.body, "", listFor(queue, request.priority), message.headers, properties);
  } catch (error) {
    await redis.del(marker, SUBMISSION_KEY + request.id); // not enqueued: let a retry enqueue it
    throw error;
  }
  return true;
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const client = createClient(spec.redis_url, spec.redis_url, "realtime");
  try {
    const enqueued = [];
    for (const item of spec.submit || []) enqueued.push(await enqueue(client, item.request, item));
    const keyed_ids = [];
    for (const item of spec.keyed || []) keyed_ids.push(await keyedId(client.broker.redis, item.owner, item.key));
    process.stdout.write(JSON.stringify({ enqueued, keyed_ids }) + "\n");
  } finally {
    await client.disconnect();
  }
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
  });
}

module.exports = { enqueue, keyedId, listFor, brokerPriority };
