// Runs Google's Node client for Pub/Sub (@google-cloud/pubsub) against a
// running Passerelle Pub/Sub API, found the emulator way:
//
//   PUBSUB_EMULATOR_HOST=127.0.0.1:8085 node pubsub.mjs
//
// (passerelle serve --pubsub-allow-unauthenticated: with that variable the
// client sends no credentials). It creates a topic and a subscription,
// publishes, receives and acks with the streaming subscriber, sees a
// nacked message come back, and deletes what it made. It prints one line per
// step and exits 1 at the first failure.
import {PubSub} from '@google-cloud/pubsub';

if (!process.env.PUBSUB_EMULATOR_HOST) {
  console.error('pubsub.mjs: set PUBSUB_EMULATOR_HOST (host:port of the Pub/Sub API)');
  process.exit(2);
}
const pubsub = new PubSub({projectId: 'node-check'});
const suffix = Date.now();
const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref());

async function main() {
  const [topic] = await pubsub.createTopic(`node-topic-${suffix}`);
  console.log(`pubsub: created ${topic.name}`);
  const [sub] = await topic.createSubscription(`node-sub-${suffix}`, {ackDeadlineSeconds: 10});
  console.log(`pubsub: created ${sub.name}`);
  const n = 5;
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push(await topic.publishMessage({data: Buffer.from(`node-${i}`), attributes: {i: String(i)}}));
  }
  console.log(`pubsub: published ${n} messages, ids ${ids.join(',')}`);
  const acked = new Set();
  let nacked = false;
  await Promise.race([timeout(30000, 'receive'), new Promise((resolve, reject) => {
    sub.on('error', reject);
    sub.on('message', (m) => {
      if (!ids.includes(m.id) || m.attributes.i !== m.data.toString().slice(5)) {
        reject(new Error(`unexpected message ${m.id} ${m.data} ${JSON.stringify(m.attributes)}`));
        return;
      }
      if (!nacked && m.attributes.i === '0') {
        nacked = true;
        m.nack(); // comes back
        return;
      }
      m.ack();
      acked.add(m.id);
      if (acked.size === n) resolve();
    });
  })]);
  console.log(`pubsub: received and acked ${acked.size} messages, one after a nack`);
  await sub.close();
  await sub.delete();
  await topic.delete();
  console.log('pubsub: deleted the subscription and the topic');
}

main().then(() => process.exit(0), (err) => {
  console.error(`pubsub: ${err.code !== undefined ? `code ${err.code}: ` : ''}${err.message}`);
  process.exit(1);
});
