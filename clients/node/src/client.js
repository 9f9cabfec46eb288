'use strict';
// A small client for tickserve.v1.SignalService over @grpc/grpc-js.
//
// The contract is loaded at run time from protos/tickserve/v1/tickserve.proto (nothing is
// generated or committed). Message objects use the .proto's field names (snake_case), enums as
// their full names ('ACTION_BUY'), and 64-bit integers (timestamp_ns, sequence, counts) as
// decimal strings, so no value above 2^53 loses precision. Ticks may give timestamp_ns and
// sequence as strings, BigInts or safe-integer numbers.
//
// Plaintext by default. TLS when certificates are given (rootCertificates: the PEM CA to trust;
// privateKey + certificateChain: a client certificate for mutual TLS), or with tls: true to
// trust the system roots. `token` is sent as `authorization: Bearer <token>` on every call
// (plaintext or TLS), as the Python client does.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { streamSignalsResuming } = require('./resume');

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024; // as the server and the Python client
const PROTO_FILE = path.join('tickserve', 'v1', 'tickserve.proto');

// protos/ sits three levels above this file in the repository (clients/node/src/ -> repo root).
// TICKSERVE_PROTO_DIR points elsewhere (e.g. a copy of protos/ next to an installed client).
function defaultProtoDir() {
  if (process.env.TICKSERVE_PROTO_DIR) return process.env.TICKSERVE_PROTO_DIR;
  return path.resolve(__dirname, '..', '..', '..', 'protos');
}

const LOADER_OPTIONS = {
  keepCase: true, // field names exactly as in the .proto: timestamp_ns, bid_price, ...
  longs: String, // int64/uint64 -> decimal strings: never rounded through a double
  enums: String, // enum values by name
  defaults: true, // absent scalars -> their zero value (proto3 optional fields stay absent)
  oneofs: true, // the name of the set oneof member as a virtual field, e.g. result: 'signal'
  arrays: true,
  objects: true,
};

const cache = new Map();

/** The loaded tickserve.v1 package (service constructors), cached per proto directory. */
function loadProto(protoDir = defaultProtoDir()) {
  let pkg = cache.get(protoDir);
  if (!pkg) {
    const file = path.join(protoDir, PROTO_FILE);
    if (!fs.existsSync(file)) {
      throw new Error(`tickserve: cannot find ${file} (set TICKSERVE_PROTO_DIR to the protos/ directory)`);
    }
    const definition = protoLoader.loadSync(PROTO_FILE, { ...LOADER_OPTIONS, includeDirs: [protoDir] });
    pkg = grpc.loadPackageDefinition(definition).tickserve.v1;
    cache.set(protoDir, pkg);
  }
  return pkg;
}

// --- 64-bit integers --------------------------------------------------------------------------

const INT_RE = /^-?\d+$/;

/** A 64-bit integer field value as a decimal string, refusing anything that lost precision. */
function int64String(value, name) {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') {
    const s = value.trim();
    if (!INT_RE.test(s)) throw new TypeError(`${name}: not an integer: ${JSON.stringify(value)}`);
    return BigInt(s).toString(); // normalised: no leading zeros or '+'
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError(`${name}: ${value} is not a safe integer; pass 64-bit values as a string or BigInt`);
    }
    return String(value);
  }
  throw new TypeError(`${name}: expected a string, BigInt or integer number, got ${typeof value}`);
}

// Tick.aggressor, the side that took the tick's trade: the Side enum's names, 'buy'/'sell'
// (any case), or +1/-1/0 as the Python client takes it; null, undefined, '' or 0 = unspecified.
const SIDE_NAMES = new Set(['SIDE_UNSPECIFIED', 'SIDE_BUY', 'SIDE_SELL']);
const SIDE_OF = new Map([['buy', 'SIDE_BUY'], ['sell', 'SIDE_SELL'], [1, 'SIDE_BUY'], [-1, 'SIDE_SELL'],
  [0, 'SIDE_UNSPECIFIED']]);

/** An aggressor value (see SIDE_OF) as the Side enum name the loader encodes. */
function sideName(value) {
  if (value === undefined || value === null || value === '') return 'SIDE_UNSPECIFIED';
  if (SIDE_NAMES.has(value)) return value;
  const side = SIDE_OF.get(typeof value === 'string' ? value.trim().toLowerCase() : value);
  if (side === undefined) {
    throw new TypeError(
      `aggressor: expected SIDE_BUY, SIDE_SELL, SIDE_UNSPECIFIED, buy, sell, 1, -1 or 0, got ${JSON.stringify(value)}`,
    );
  }
  return side;
}

/**
 * A tick as the message object the loader encodes. Input: {instrument, timestamp_ns,
 * last_price, last_size, bid_price, bid_size, ask_price, ask_size, sequence?, aggressor?};
 * sequence null/undefined = not set; aggressor as `sideName` takes it (unset = unspecified).
 */
function toTickMessage(tick) {
  const msg = {
    instrument: tick.instrument ?? '',
    timestamp_ns: int64String(tick.timestamp_ns ?? '0', 'timestamp_ns'),
    last_price: Number(tick.last_price ?? 0),
    last_size: Number(tick.last_size ?? 0),
    bid_price: Array.from(tick.bid_price ?? [], Number),
    bid_size: Array.from(tick.bid_size ?? [], Number),
    ask_price: Array.from(tick.ask_price ?? [], Number),
    ask_size: Array.from(tick.ask_size ?? [], Number),
  };
  if (tick.sequence !== undefined && tick.sequence !== null) {
    msg.sequence = int64String(tick.sequence, 'sequence');
  }
  const side = sideName(tick.aggressor);
  if (side !== 'SIDE_UNSPECIFIED') msg.aggressor = side;
  return msg;
}

// --- enum names -------------------------------------------------------------------------------

/** 'ACTION_BUY' -> 'BUY' (also STRENGTH_, URGENCY_, RISK_, MODEL_STATE_). */
function shortName(value, prefix) {
  return typeof value === 'string' && value.startsWith(prefix) ? value.slice(prefix.length) : String(value);
}

/** gRPC status code number -> name, e.g. 3 -> 'INVALID_ARGUMENT'. */
function statusName(code) {
  return grpc.status[code] ?? String(code);
}

// --- streaming helpers ------------------------------------------------------------------------

/** Chunks of up to `size` items from a sync or async iterable. */
async function* chunks(items, size) {
  let chunk = [];
  for await (const item of items) {
    chunk.push(item);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length) yield chunk;
}

/**
 * Writes `messages` (a sync or async iterable) to a client-streaming call with backpressure,
 * then half-closes it. A failure while producing messages (e.g. a bad CSV row) half-closes the
 * call too, so the server still answers every tick sent before it; drive() rethrows it after
 * the last response.
 */
function pump(call, messages) {
  let failure = null;
  let closed = false; // the call ended (status received, cancelled): stop reading the source
  const stop = () => {
    closed = true;
  };
  call.on('error', stop); // also keeps a late error (e.g. after cancel) from going unhandled
  call.on('status', stop);
  call.on('close', stop);
  const done = (async () => {
    try {
      for await (const message of messages) {
        if (closed || call.destroyed || call.writableEnded) return;
        if (!call.write(message)) {
          await new Promise((resolve) => {
            const finish = () => {
              call.off('drain', finish);
              call.off('close', finish);
              call.off('error', finish);
              resolve();
            };
            call.on('drain', finish);
            call.on('close', finish);
            call.on('error', finish);
          });
        }
      }
      if (!call.writableEnded) call.end();
    } catch (err) {
      failure = err;
      if (!call.writableEnded) call.end();
    }
  })();
  return { done, failure: () => failure };
}

/** Reads every response of a duplex call while pump() writes; rethrows a writer failure first. */
async function* drive(call, messages) {
  const writer = pump(call, messages);
  let finished = false;
  try {
    for await (const response of call) yield response;
    finished = true;
  } catch (err) {
    finished = true;
    await writer.done;
    throw writer.failure() ?? err;
  } finally {
    if (!finished) call.cancel(); // the consumer stopped early
  }
  await writer.done;
  if (writer.failure()) throw writer.failure();
}

// --- security ---------------------------------------------------------------------------------

const pem = (value) => (value == null ? null : Buffer.isBuffer(value) ? value : Buffer.from(String(value)));

function channelCredentials({ rootCertificates = null, privateKey = null, certificateChain = null, tls = null }) {
  const given = [rootCertificates, privateKey, certificateChain].some((c) => c != null);
  if ((privateKey == null) !== (certificateChain == null)) {
    throw new Error('mutual TLS needs both privateKey and certificateChain');
  }
  const secure = tls ?? given;
  if (given && !secure) throw new Error('certificates given but tls=false');
  if (!secure) return { secure, credentials: grpc.credentials.createInsecure() };
  return { secure, credentials: grpc.credentials.createSsl(pem(rootCertificates), pem(privateKey), pem(certificateChain)) };
}

function checkToken(token) {
  if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
    throw new Error('token: must be non-empty printable ASCII without spaces');
  }
  return token;
}

/** A client interceptor adding `authorization: Bearer <token>` to every call, of every kind. */
function bearerToken(token) {
  const header = `Bearer ${checkToken(token)}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', header);
        next(metadata, listener);
      },
    });
}

/** The first token in a token file's text: one per line, blank lines and # comments ignored. */
function tokenFromText(text) {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line && !line.startsWith('#')) return checkToken(line);
  }
  return null;
}

// --- the client -------------------------------------------------------------------------------

class TickserveClient {
  /**
   * @param {string} target host:port, e.g. '127.0.0.1:50051'
   * @param {object} [options]
   * @param {number} [options.timeoutMs] a deadline for every call (none by default, as the Python client)
   * @param {string|Buffer} [options.rootCertificates] PEM CA to trust for the server: connect with TLS
   * @param {string|Buffer} [options.privateKey] with certificateChain: a client certificate (mutual TLS)
   * @param {string|Buffer} [options.certificateChain]
   * @param {boolean} [options.tls] null/undefined: TLS exactly when a certificate is given; true: TLS
   *   (system roots without rootCertificates); false with certificates is an error
   * @param {string} [options.token] sent as `authorization: Bearer <token>` on every call
   * @param {string} [options.protoDir] the protos/ directory (default: the repository's, or
   *   $TICKSERVE_PROTO_DIR)
   */
  constructor(target, options = {}) {
    this.target = target;
    this.timeoutMs = options.timeoutMs ?? null;
    this.proto = loadProto(options.protoDir);
    const { secure, credentials } = channelCredentials(options);
    this.secure = secure;
    const channelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // keepalive and reconnection: the same agreement as the Python client's
      // (clients/python/src/tickserve_proto/contract.py says why)
      'grpc.keepalive_time_ms': 30000,
      'grpc.keepalive_timeout_ms': 10000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_reconnect_backoff_ms': 5000,
    };
    if (options.token != null) channelOptions.interceptors = [bearerToken(options.token)];
    this.stub = new this.proto.SignalService(target, credentials, channelOptions);
  }

  close() {
    this.stub.close();
  }

  _callOptions() {
    return this.timeoutMs == null ? {} : { deadline: Date.now() + this.timeoutMs };
  }

  /** Resolves once the channel is connected (rejects after timeoutMs). */
  waitReady(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * StreamSignals: one TickResult per tick, in order, as an async iterable. Each result is
   * {result: 'signal', signal: {...}} or {result: 'error', error: {code, message, field, ...}}.
   * batchSize > 1 sends the ticks in TickBatch messages of that many.
   *
   * @param {Iterable|AsyncIterable} ticks
   * @param {{model?: string, version?: string, batchSize?: number, returnFeatures?: boolean}} [options]
   */
  async *streamSignals(ticks, options = {}) {
    const { model = '', version = '', batchSize = 1, returnFeatures = false } = options;
    async function* requests() {
      yield { config: { model, version, return_features: returnFeatures } };
      if (batchSize <= 1) {
        for await (const tick of ticks) yield { tick: toTickMessage(tick) };
      } else {
        for await (const chunk of chunks(ticks, batchSize)) yield { batch: { ticks: chunk.map(toTickMessage) } };
      }
    }
    const call = this.stub.StreamSignals(this._callOptions());
    for await (const response of drive(call, requests())) {
      yield* response.results;
    }
  }

  /**
   * streamSignals that survives its server: reconnects on UNAVAILABLE or CANCELLED, replays each
   * instrument's last max_lookback ticks as warm-up and resumes (src/resume.js); every tick is
   * answered once, in order, with the signals of a stream that never broke.
   *
   * @param {Iterable} ticks
   * @param {{model?: string, version?: string, batchSize?: number, returnFeatures?: boolean,
   *          retryForMs?: number, onResume?: (answered: number, attempt: number) => void}} [options]
   */
  async *streamSignalsResuming(ticks, options = {}) {
    const messages = Array.from(ticks, toTickMessage); // resending needs them again
    const open = (requests) => drive(this.stub.StreamSignals(this._callOptions()), requests);
    yield* streamSignalsResuming(this, messages, options, open);
  }

  /** streamSignals() collected into an array. */
  async streamSignalsAll(ticks, options = {}) {
    const results = [];
    for await (const result of this.streamSignals(ticks, options)) results.push(result);
    return results;
  }

  /** Predict (unary): a self-contained batch; resolves to the list of signals. */
  predict(ticks, options = {}) {
    const { model = '', version = '', returnFeatures = false } = options;
    const request = { model, version, ticks: Array.from(ticks, toTickMessage), return_features: returnFeatures };
    return new Promise((resolve, reject) => {
      this.stub.Predict(request, this._callOptions(), (err, response) =>
        err ? reject(err) : resolve(response.signals),
      );
    });
  }

  /**
   * Evaluate: streams the ticks (in batches of batchSize, 1000 by default as the Python client),
   * calls onProgress(progress) for every progress message and resolves to the EvaluationReport.
   *
   * @param {Iterable|AsyncIterable} ticks
   * @param {{model?: string, version?: string, progressEvery?: number, batchSize?: number,
   *          onProgress?: (p: object) => void}} [options]
   */
  async evaluate(ticks, options = {}) {
    const { model = '', version = '', progressEvery = 0, batchSize = 1000, onProgress = null } = options;
    async function* requests() {
      yield { config: { model, version, progress_every: int64String(progressEvery, 'progress_every') } };
      for await (const chunk of chunks(ticks, Math.max(1, batchSize))) {
        yield { batch: { ticks: chunk.map(toTickMessage) } };
      }
    }
    const call = this.stub.Evaluate(this._callOptions());
    let report = null;
    for await (const response of drive(call, requests())) {
      if (response.payload === 'progress') {
        if (onProgress) onProgress(response.progress);
      } else if (response.payload === 'report') {
        report = response.report;
      }
    }
    if (report === null) throw new Error('the server ended Evaluate without a report');
    return report;
  }

  /** ListModels: resolves to {models: [ModelInfo], default_model}. */
  listModels() {
    return new Promise((resolve, reject) => {
      this.stub.ListModels({}, this._callOptions(), (err, response) => (err ? reject(err) : resolve(response)));
    });
  }

  /** GetModel: resolves to a ModelInfo (NOT_FOUND for an unknown model or version). */
  getModel(model = '', version = '') {
    return new Promise((resolve, reject) => {
      this.stub.GetModel({ model, version }, this._callOptions(), (err, response) =>
        err ? reject(err) : resolve(response),
      );
    });
  }
}

module.exports = {
  TickserveClient,
  loadProto,
  toTickMessage,
  sideName,
  int64String,
  shortName,
  statusName,
  tokenFromText,
  MAX_MESSAGE_BYTES,
  grpc,
};
