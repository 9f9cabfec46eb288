#!/usr/bin/env node
'use strict';
// tickserve-node: the Node.js command line for a tickserve server.
//
//   tickserve-node stream   --server HOST:PORT --csv FILE [--model M] [--version V] [--batch N] [--json]
//   tickserve-node evaluate --server HOST:PORT --csv FILE [--model M] [--version V] [--batch N] [--json]
//   tickserve-node models   --server HOST:PORT [--model M [--version V]] [--json]
//
// Every command also takes --tls-ca/--tls-cert/--tls-key/--tls and --token-file (or
// $TICKSERVE_TOKEN), as the Python `tickserve` command does.
//
// Exit status: 0 on success, 1 when the server answers an RPC with an error, 2 for bad usage
// or a bad CSV file.

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { TickserveClient, shortName, statusName, tokenFromText } = require('../src/client');
const { readTicks, readTicksAll, CsvError } = require('../src/csv');

const USAGE = `usage:
  tickserve-node stream   --server HOST:PORT --csv FILE [--model M] [--version V] [--batch N] [--json] [--resume]
  tickserve-node evaluate --server HOST:PORT --csv FILE [--model M] [--version V] [--batch N] [--json]
  tickserve-node models   --server HOST:PORT [--model M [--version V]] [--json]

  --server     the server address (default 127.0.0.1:50051)
  --csv        the tick file: instrument,timestamp_ns,last_price,last_size,bid_px_1,bid_qty_1,...,
               ask_px_1,ask_qty_1,...[,sequence][,aggressor] ('-' = standard input)
  --model      model name (default: the server's default model)
  --version    model version (default: the newest READY one)
  --batch      ticks per message (stream: 1 = one Tick message per tick, default 1;
               evaluate: default 1000)
  --json       one JSON object per line (stream), or the whole report / model list as JSON
  --resume     stream: survive the server going away (reconnect, replay each instrument's last
               ticks as warm-up, resend the rest): every tick answered once, the same signals
  --timeout    deadline of the call in seconds (default: none)
  --tls-ca     PEM CA to trust for the server's certificate: connect with TLS
  --tls-cert   PEM client certificate chain for mutual TLS (with --tls-key)
  --tls-key    PEM private key of --tls-cert
  --tls        connect with TLS, trusting the system's root certificates
  --token-file file holding the bearer token (its first token line); default: $TICKSERVE_TOKEN`;

class UsageError extends Error {}

const OPTIONS = {
  server: { type: 'string', default: '127.0.0.1:50051' },
  csv: { type: 'string' },
  model: { type: 'string', default: '' },
  version: { type: 'string', default: '' },
  batch: { type: 'string' },
  json: { type: 'boolean', default: false },
  resume: { type: 'boolean', default: false },
  timeout: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  tls: { type: 'boolean', default: false },
  'token-file': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
};

function positiveInt(value, name) {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`--${name}: expected a positive integer, got ${value}`);
  return Number(value);
}

function makeClient(args) {
  const timeoutMs = args.timeout === undefined ? null : Number(args.timeout) * 1000;
  if (timeoutMs !== null && !(timeoutMs > 0)) throw new UsageError(`--timeout: expected seconds > 0, got ${args.timeout}`);
  if ((args['tls-cert'] === undefined) !== (args['tls-key'] === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const read = (file) => (file === undefined ? null : fs.readFileSync(file));
  let token = null;
  if (args['token-file'] !== undefined) {
    token = tokenFromText(fs.readFileSync(args['token-file'], 'utf8'));
    if (token === null) throw new UsageError(`token file ${args['token-file']}: no token in it`);
  } else if ((process.env.TICKSERVE_TOKEN ?? '').trim()) {
    token = process.env.TICKSERVE_TOKEN.trim();
  }
  const tls = args.tls || args['tls-ca'] !== undefined || args['tls-cert'] !== undefined;
  const security = {
    tls,
    rootCertificates: read(args['tls-ca']),
    certificateChain: read(args['tls-cert']),
    privateKey: read(args['tls-key']),
  };
  try {
    return new TickserveClient(args.server, { timeoutMs, token, ...security });
  } catch (err) {
    throw new UsageError(err.message); // a bad token or certificate
  }
}

function requireCsv(args) {
  if (!args.csv) throw new UsageError('--csv FILE is required');
  return args.csv;
}

// --- output -------------------------------------------------------------------------------------

function out(line) {
  process.stdout.write(line + '\n');
}

/** A signal as a plain object: enums by short name, 64-bit values as decimal strings. */
function signalJson(s) {
  return {
    action: shortName(s.action, 'ACTION_'),
    p_buy: s.p_buy,
    p_hold: s.p_hold,
    p_sell: s.p_sell,
    confidence: s.confidence,
    edge_score: s.edge_score,
    strength: shortName(s.strength, 'STRENGTH_'),
    urgency: shortName(s.urgency, 'URGENCY_'),
    risk: shortName(s.risk, 'RISK_'),
    instrument: s.instrument,
    timestamp_ns: s.timestamp_ns,
    sequence: s.sequence ?? null,
    model: s.model,
    model_version: s.model_version,
    warmed_up: s.warmed_up,
  };
}

function errorJson(e) {
  return {
    error: {
      code: e.code,
      status: statusName(e.code),
      message: e.message,
      field: e.field,
      instrument: e.instrument,
      timestamp_ns: e.timestamp_ns,
      sequence: e.sequence ?? null,
    },
  };
}

/** HH:MM:SS.mmm (UTC) of a nanosecond timestamp given as a decimal string. */
function clock(timestampNs) {
  try {
    const ms = BigInt(timestampNs) / 1000000n;
    const date = new Date(Number(ms));
    if (!Number.isNaN(date.getTime())) return date.toISOString().slice(11, 23);
  } catch {
    // fall through
  }
  return String(timestampNs);
}

const num = (x, digits = 3) => x.toFixed(digits);

/** Python's format(x, '.{p}g'): p significant digits, trailing zeros dropped, e+XX past the range. */
function formatG(x, p = 3) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const [mantissa, exp] = x.toExponential(p - 1).split('e');
  const e = Number(exp);
  const trim = (t) => (t.includes('.') ? t.replace(/\.?0+$/, '') : t);
  if (e < -4 || e >= p) return `${trim(mantissa)}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return trim(x.toFixed(Math.max(0, p - 1 - e)));
}
const signed = (x, digits = 3) => (x >= 0 ? '+' : '') + x.toFixed(digits);

function signalHeader() {
  return (
    `${'TIME (UTC)'.padEnd(15)} ${'INSTR'.padEnd(6)} ${'SEQ'.padStart(6)} ${'ACTION'.padEnd(6)} ` +
    `${'P_BUY'.padStart(6)} ${'P_HOLD'.padStart(6)} ${'P_SELL'.padStart(6)} ${'EDGE'.padStart(6)} ` +
    `${'STRENGTH'.padEnd(8)} ${'URGENCY'.padEnd(10)} RISK`
  );
}

function signalLine(s) {
  return (
    `${clock(s.timestamp_ns).padEnd(15)} ${s.instrument.padEnd(6)} ${(s.sequence ?? '-').padStart(6)} ` +
    `${shortName(s.action, 'ACTION_').padEnd(6)} ${num(s.p_buy).padStart(6)} ${num(s.p_hold).padStart(6)} ` +
    `${num(s.p_sell).padStart(6)} ${signed(s.edge_score).padStart(6)} ${shortName(s.strength, 'STRENGTH_').padEnd(8)} ` +
    `${shortName(s.urgency, 'URGENCY_').padEnd(10)} ${shortName(s.risk, 'RISK_')}`
  );
}

function errorLine(e) {
  const seq = e.sequence == null ? '' : ` seq ${e.sequence}`;
  return `tick ${e.instrument} ${e.timestamp_ns}${seq} rejected (code ${e.code} ${statusName(e.code)}): ${e.message}`;
}

function reportText(r) {
  const f4 = (x) => x.toFixed(4);
  const beats = r.accuracy > r.majority_baseline_accuracy ? 'beats' : 'does NOT beat';
  const lines = [
    `evaluation of ${r.model}/${r.model_version}: ${r.ticks} ticks, ${r.labeled} labeled`,
    `  accuracy ${f4(r.accuracy)}   macro-F1 ${f4(r.macro_f1)}   log loss ${f4(r.log_loss)}`,
    `  majority-class baseline (${r.majority_class}) accuracy ${f4(r.majority_baseline_accuracy)}` +
      `   -> model ${beats} it by ${signed(100 * (r.accuracy - r.majority_baseline_accuracy), 2)} points`,
    `  ${'class'.padEnd(6)} ${'precision'.padStart(9)} ${'recall'.padStart(7)} ${'f1'.padStart(7)} ${'support'.padStart(8)}`,
  ];
  for (const c of r.per_class) {
    lines.push(
      `  ${c.label.padEnd(6)} ${f4(c.precision).padStart(9)} ${f4(c.recall).padStart(7)} ${f4(c.f1).padStart(7)} ` +
        `${c.support.padStart(8)}`,
    );
  }
  const n = r.classes.length;
  lines.push('  confusion (rows true, columns predicted): ' + r.classes.map((c) => c.padStart(6)).join(' '));
  for (let i = 0; i < n; i++) {
    const row = r.confusion_matrix.slice(i * n, (i + 1) * n);
    lines.push(`  ${''.padEnd(41)}${r.classes[i].padStart(6)} ` + row.map((v) => v.padStart(6)).join(' '));
  }
  for (const [title, counts] of [['actions', r.action_counts], ['strength', r.strength_counts], ['risk', r.risk_counts]]) {
    const items = Object.keys(counts).sort().map((k) => `${k} ${counts[k]}`);
    lines.push(`  ${title.padEnd(9)}: ${items.join(', ')}`);
  }
  lines.push(
    `  calibration (temperature ${r.calibration_temperature.toFixed(3)}): Brier ${f4(r.brier_score_uncalibrated)} -> ` +
      `${f4(r.brier_score)}, ECE ${f4(r.expected_calibration_error_uncalibrated)} -> ${f4(r.expected_calibration_error)}`,
  );
  const top = r.feature_importance.slice(0, 5).map((f) => `${f.feature} ${formatG(f.importance)}`);
  lines.push(`  top features (importance): ${top.join(', ')}`);
  return lines.join('\n');
}

// --- commands -----------------------------------------------------------------------------------

async function cmdStream(args) {
  const file = requireCsv(args);
  const batchSize = args.batch === undefined ? 1 : positiveInt(args.batch, 'batch');
  const client = makeClient(args);
  const counts = {};
  const started = process.hrtime.bigint();
  try {
    if (!args.json) out(signalHeader());
    const options = { model: args.model, version: args.version, batchSize };
    const onResume = (answered, attempt) =>
      process.stderr.write(`stream broken after ${answered} answers: resuming (attempt ${attempt})\n`);
    const results = args.resume
      ? client.streamSignalsResuming(await readTicksAll(file), { ...options, onResume })
      : client.streamSignals(readTicks(file), options);
    for await (const result of results) {
      if (result.result === 'error') {
        counts.error = (counts.error ?? 0) + 1;
        out(args.json ? JSON.stringify(errorJson(result.error)) : errorLine(result.error));
      } else {
        const name = shortName(result.signal.action, 'ACTION_');
        counts[name] = (counts[name] ?? 0) + 1;
        out(args.json ? JSON.stringify(signalJson(result.signal)) : signalLine(result.signal));
      }
    }
  } finally {
    client.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const summary =
    `${total} ticks answered in ${seconds.toFixed(2)} s (${Math.round(total / seconds)} ticks/s, batch ${batchSize}); ` +
    Object.keys(counts).sort().map((k) => `${k} ${counts[k]}`).join(', ');
  // With --json, stdout holds only the JSON lines.
  if (args.json) process.stderr.write(summary + '\n');
  else out(summary);
}

async function cmdEvaluate(args) {
  const file = requireCsv(args);
  const batchSize = args.batch === undefined ? 1000 : positiveInt(args.batch, 'batch');
  const client = makeClient(args);
  const tty = process.stderr.isTTY;
  let report;
  try {
    report = await client.evaluate(readTicks(file), {
      model: args.model,
      version: args.version,
      batchSize,
      progressEvery: tty ? 1000 : 0,
      onProgress: (p) => {
        if (tty) process.stderr.write(`\revaluating: ${p.ticks} ticks, accuracy ${p.accuracy.toFixed(4)}`);
      },
    });
  } finally {
    if (tty) process.stderr.write('\n');
    client.close();
  }
  out(args.json ? JSON.stringify(report) : reportText(report));
}

async function cmdModels(args) {
  const client = makeClient(args);
  try {
    if (args.model || args.version) {
      const info = await client.getModel(args.model, args.version);
      out(JSON.stringify(info, null, args.json ? 0 : 2));
      return;
    }
    const response = await client.listModels();
    if (args.json) {
      out(JSON.stringify(response));
      return;
    }
    out(`${'MODEL'.padEnd(24)} ${'VERSION'.padEnd(8)} ${'ADAPTER'.padEnd(10)} ${'STATE'.padEnd(8)} ${'FEATURES'.padEnd(8)} NOTE`);
    for (const m of response.models) {
      const note = m.state_reason || (m.name === response.default_model ? 'default' : '');
      out(
        `${m.name.padEnd(24)} ${m.version.padEnd(8)} ${m.adapter.padEnd(10)} ` +
          `${shortName(m.state, 'MODEL_STATE_').padEnd(8)} ${String(m.feature_names.length).padEnd(8)} ${note}`,
      );
    }
  } finally {
    client.close();
  }
}

const COMMANDS = { stream: cmdStream, evaluate: cmdEvaluate, models: cmdModels };

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    out(USAGE);
    return 0;
  }
  const run = COMMANDS[command];
  let args;
  try {
    if (!run) throw new UsageError(`unknown command ${command} (stream, evaluate, models)`);
    ({ values: args } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    process.stderr.write(`tickserve-node: error: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    out(USAGE);
    return 0;
  }
  try {
    await run(args);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof CsvError || typeof err.code === 'string') {
      process.stderr.write(`tickserve-node: error: ${err.message}\n`);
      return 2;
    }
    if (typeof err.code === 'number' && 'details' in err) {
      process.stderr.write(`tickserve-node: ${statusName(err.code)}: ${err.details}\n`);
      return 1;
    }
    throw err;
  }
}

process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0); // e.g. piped into head
  throw err;
});

if (require.main !== module) {
  module.exports = { formatG, signalJson, errorJson, reportText };
  return;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`tickserve-node: ${err.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
