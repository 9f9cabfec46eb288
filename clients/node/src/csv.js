'use strict';
// Reads ticks from the wide CSV layout, one tick per row:
//
//   instrument,timestamp_ns,last_price,last_size,
//   bid_px_1,bid_qty_1,...,bid_px_N,bid_qty_N,ask_px_1,ask_qty_1,...,ask_px_M,ask_qty_M[,sequence][,aggressor]
//
// Columns are found by name (any order); N and M come from the header (levels 1..N must all be
// there). An empty cell is an absent value: each of the four level columns (bid_px, bid_qty,
// ask_px, ask_qty) ends at its first empty cell, so a shallow book leaves its deeper cells
// empty, and a row that gives a price without its size reaches the server as it is (which
// rejects it, naming the field). A value after an empty cell of the same column is an error.
// An empty sequence cell (or no sequence column) = no sequence. aggressor is the side that took
// the tick's trade: buy or sell (any case), empty (or no such column) = unknown or no trade; it
// is sent as Tick.aggressor (SIDE_BUY, SIDE_SELL, unset). timestamp_ns and sequence stay
// decimal strings: 64-bit values never pass through a double. Numbers also accept nan, inf and
// -inf (any case), as Python writes them. Quoted cells ("a,b", "say ""x""") are understood.

const fs = require('node:fs');
const readline = require('node:readline');

const REQUIRED = ['instrument', 'timestamp_ns', 'last_price', 'last_size'];
const OPTIONAL = ['sequence', 'aggressor'];
const SIDES = { buy: 'SIDE_BUY', sell: 'SIDE_SELL' };
const LEVEL_RE = /^(bid|ask)_(px|qty)_(\d+)$/;

class CsvError extends Error {}

/** One CSV line split into cells (RFC 4180 quoting, no line breaks inside cells). */
function splitLine(line) {
  const cells = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let cell = '';
      i += 1;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new CsvError('unterminated quoted cell');
        cell += line.slice(i, q);
        if (line[q + 1] === '"') {
          cell += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      cells.push(cell);
      if (i === line.length) return cells;
      if (line[i] !== ',') throw new CsvError(`unexpected ${JSON.stringify(line[i])} after a quoted cell`);
      i += 1;
    } else {
      const comma = line.indexOf(',', i);
      if (comma < 0) {
        cells.push(line.slice(i));
        return cells;
      }
      cells.push(line.slice(i, comma));
      i = comma + 1;
    }
  }
}

/** The column layout from the header line: {index: {name: i}, bidLevels, askLevels, width}. */
function parseHeader(line) {
  const names = splitLine(line).map((n) => n.trim());
  const index = {};
  names.forEach((name, i) => {
    if (name in index) throw new CsvError(`header: column ${name} appears twice`);
    index[name] = i;
  });
  for (const name of REQUIRED) {
    if (!(name in index)) throw new CsvError(`header: missing column ${name}`);
  }
  const levels = { bid: 0, ask: 0 };
  for (const name of names) {
    const m = LEVEL_RE.exec(name);
    if (m) levels[m[1]] = Math.max(levels[m[1]], Number(m[3]));
    else if (!REQUIRED.includes(name) && !OPTIONAL.includes(name)) throw new CsvError(`header: unknown column ${name}`);
  }
  for (const side of ['bid', 'ask']) {
    if (levels[side] === 0) throw new CsvError(`header: no ${side}_px_1/${side}_qty_1 columns`);
    for (let k = 1; k <= levels[side]; k++) {
      for (const what of ['px', 'qty']) {
        if (!(`${side}_${what}_${k}` in index)) {
          throw new CsvError(`header: missing column ${side}_${what}_${k} (levels go up to ${levels[side]})`);
        }
      }
    }
  }
  return { index, bidLevels: levels.bid, askLevels: levels.ask, width: names.length };
}

const SPECIAL = { nan: NaN, '+nan': NaN, '-nan': NaN, inf: Infinity, '+inf': Infinity, '-inf': -Infinity,
  infinity: Infinity, '+infinity': Infinity, '-infinity': -Infinity };
const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function parseNumber(cell, column) {
  const s = cell.trim();
  const special = SPECIAL[s.toLowerCase()];
  if (special !== undefined) return special;
  if (!NUMBER_RE.test(s)) throw new CsvError(`${column}: not a number: ${JSON.stringify(cell)}`);
  return Number(s);
}

function parseInteger(cell, column) {
  const s = cell.trim();
  if (!/^[+-]?\d+$/.test(s)) throw new CsvError(`${column}: not an integer: ${JSON.stringify(cell)}`);
  return BigInt(s).toString();
}

function parseSide(cell) {
  const side = SIDES[cell.trim().toLowerCase()];
  if (side === undefined) {
    throw new CsvError(`aggressor: expected buy, sell or an empty cell, got ${JSON.stringify(cell)}`);
  }
  return side;
}

function levelColumn(cells, index, side, what, depth) {
  const values = [];
  let gap = 0;
  for (let k = 1; k <= depth; k++) {
    const name = `${side}_${what}_${k}`;
    const cell = cells[index[name]] ?? '';
    if (cell.trim() === '') {
      if (!gap) gap = k;
    } else if (gap) {
      throw new CsvError(`${name}: a value after the empty ${side}_${what}_${gap} (levels end at the first empty cell)`);
    } else {
      values.push(parseNumber(cell, name));
    }
  }
  return values;
}

/** One data line as a tick object for TickserveClient (see toTickMessage in client.js). */
function parseRow(line, layout) {
  const cells = splitLine(line);
  if (cells.length !== layout.width) {
    throw new CsvError(`expected ${layout.width} cells as in the header, got ${cells.length}`);
  }
  const { index, bidLevels, askLevels } = layout;
  const tick = {
    instrument: cells[index.instrument],
    timestamp_ns: parseInteger(cells[index.timestamp_ns], 'timestamp_ns'),
    last_price: cells[index.last_price].trim() === '' ? 0 : parseNumber(cells[index.last_price], 'last_price'),
    last_size: cells[index.last_size].trim() === '' ? 0 : parseNumber(cells[index.last_size], 'last_size'),
    bid_price: levelColumn(cells, index, 'bid', 'px', bidLevels),
    bid_size: levelColumn(cells, index, 'bid', 'qty', bidLevels),
    ask_price: levelColumn(cells, index, 'ask', 'px', askLevels),
    ask_size: levelColumn(cells, index, 'ask', 'qty', askLevels),
  };
  if ('sequence' in index && cells[index.sequence].trim() !== '') {
    tick.sequence = parseInteger(cells[index.sequence], 'sequence');
  }
  if ('aggressor' in index && cells[index.aggressor].trim() !== '') {
    tick.aggressor = parseSide(cells[index.aggressor]);
  }
  return tick;
}

/**
 * The ticks of a CSV file (or '-' for standard input), one at a time, as an async iterable.
 * Blank lines are skipped; an error names the file and line.
 */
async function* readTicks(file) {
  // Opened here so that a missing or unreadable file fails at once with its own error (ENOENT...).
  const input = file === '-' ? process.stdin : fs.createReadStream('', { fd: fs.openSync(file, 'r'), encoding: 'utf8' });
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  let layout = null;
  let number = 0;
  try {
    for await (const raw of lines) {
      number += 1;
      const line = number === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (line.trim() === '') continue;
      try {
        if (layout === null) layout = parseHeader(line);
        else yield parseRow(line, layout);
      } catch (err) {
        if (err instanceof CsvError) throw new CsvError(`${file}:${number}: ${err.message}`);
        throw err;
      }
    }
  } finally {
    lines.close();
  }
  if (layout === null) throw new CsvError(`${file}: empty file (no header)`);
}

/** Every tick of a CSV file in an array. */
async function readTicksAll(file) {
  const ticks = [];
  for await (const tick of readTicks(file)) ticks.push(tick);
  return ticks;
}

module.exports = { readTicks, readTicksAll, parseHeader, parseRow, splitLine, CsvError };
