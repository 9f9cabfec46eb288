'use strict';
// A StreamSignals stream that survives its server, as the Python client's resume.py: on
// UNAVAILABLE or CANCELLED (a server stopped or killed, a replica gone) it reconnects with
// backoff, replays each instrument's last ModelInfo.max_lookback answered ticks as a `warmup`
// message (state only, no signals) and resends the ticks not answered yet, pinned to the model
// version that answered first. The server's feature state is a function of those ticks, so every
// tick is answered once, in order, with the signals of a stream that never broke.

const RETRIED = new Set([1, 14]); // CANCELLED, UNAVAILABLE

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// int64 fields are decimal strings (longs: String): compare them exactly, as BigInt
const byTime = (a, b) => {
  const x = BigInt(a.timestamp_ns);
  const y = BigInt(b.timestamp_ns);
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * @param {object} client a TickserveClient
 * @param {Array<object>} ticks Tick messages (toTickMessage's output)
 * @param {{model?: string, version?: string, batchSize?: number, returnFeatures?: boolean,
 *          retryForMs?: number, onResume?: (answered: number, attempt: number) => void}} options
 */
async function* streamSignalsResuming(client, ticks, options, open) {
  const { model = '', batchSize = 1, returnFeatures = false, retryForMs = 30000, onResume = null } = options;
  const info = await client.getModel(model, options.version ?? '');
  const lookback = Number(info.max_lookback);
  const version = options.version || info.version;
  const history = new Map(); // instrument -> its last `lookback` answered ticks
  const step = Math.max(1, batchSize);
  let answered = 0;
  let attempt = 0;
  let backoff = 50;
  let lastProgress = Date.now();
  while (answered < ticks.length) {
    const start = answered;
    const replay = [...history.values()].flat().sort(byTime); // stable: each instrument stays in order
    async function* requests() {
      yield { config: { model: info.name, version, return_features: returnFeatures } };
      if (replay.length) yield { warmup: { ticks: replay } };
      for (let i = start; i < ticks.length; i += step) {
        const chunk = ticks.slice(i, i + step);
        yield chunk.length === 1 ? { tick: chunk[0] } : { batch: { ticks: chunk } };
      }
    }
    try {
      for await (const response of open(requests())) {
        if (response.warmup) {
          if (Number(response.warmup.rejected)) {
            throw new Error(`resuming: the server refused a replayed tick: ${response.warmup.first_error.message}`);
          }
          continue;
        }
        for (const result of response.results) {
          const tick = ticks[answered];
          if (result.result === 'signal') {
            const queue = history.get(tick.instrument) ?? [];
            queue.push(tick);
            if (queue.length > lookback) queue.shift();
            history.set(tick.instrument, queue);
          }
          answered += 1;
          lastProgress = Date.now();
          backoff = 50;
          yield result;
        }
      }
      return;
    } catch (err) {
      if (!RETRIED.has(err.code) || Date.now() - lastProgress > retryForMs) throw err;
      attempt += 1;
      if (onResume) onResume(answered, attempt);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 1000);
    }
  }
}

module.exports = { streamSignalsResuming };
