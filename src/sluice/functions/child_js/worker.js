'use strict';
// The JavaScript function worker: `node --max-old-space-size=<MiB> worker.js`.
//
// Speaks the frame protocol of sluice/functions/protocol.py on fd 0 / fd 1 (4-byte big-endian
// length + JSON), exactly as the Python worker (child_py.py) does. fd 1 is written only with
// fs.writeSync; `process.stdout` is pointed at stderr before anything else runs, so neither the
// runtime's libraries nor Node's own warnings can corrupt the protocol. User code runs in a
// fresh `vm` context (runtime.js) and never sees `process`, `require` or the pipes.

Object.defineProperty(process, 'stdout', { configurable: true, enumerable: false, get: () => process.stderr });

const fs = require('fs');
const vm = require('vm');
const runtime = require('./runtime');
const { pairBatch, BatchShapeError } = require('./batching');

const { Invocation, als, ERROR_CLASSES, NotAvailableError } = runtime;

const OUT_FD = 1;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const TICK_MS = 100;
const HEARTBEAT_MS = 250;
const SEGMENT_MS = 50; // the synchronous loop over a frame's events yields this often
const EVENT_HANDLER_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias', 'delete'];
const HANDLER_TYPES = [...EVENT_HANDLER_TYPES, 'batch'];
const camelName = (kind) => 'on' + kind[0].toUpperCase() + kind.slice(1);

// --- frame output ------------------------------------------------------------------------------
function writeAll(buf) {
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(OUT_FD, buf, offset, buf.length - offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function header(length) {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(length, 0);
  return h;
}

function encodeFrame(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  return Buffer.concat([header(body.length), body]);
}

const HEARTBEAT = encodeFrame({ op: 'hb' });

// --- the function runner -------------------------------------------------------------------------
function err(type, message) {
  return { type, message };
}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

class Runner {
  constructor(init) {
    const limits = init.limits || {};
    this.timeoutMs = Number(limits.timeoutMs || 5000);
    this.maxEventBytes = Number(limits.maxOutputBytes || 64 * 1024);
    this.memoryMb = Number(limits.memoryMb || 256);
    this.filename = String(init.filename || 'function.js');
    this.secrets = Array.isArray(init.secrets) ? init.secrets : [];
    this.redact = runtime.makeRedact(this.secrets);
    this.recycle = false;
    this.handlers = Object.create(null);
    this.eventHandlers = Object.create(null);
    this.state = null;
    this.busy = false;
    this.lastHb = 0;
    this.deadlines = new Map(); // key → [deadline, onTimeout]
    this.lineRe = new RegExp(this.filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + ':(\\d+)(?::\\d+)?');
    const nodeFetch = require('node-fetch');
    this.ctx = runtime.buildContext({
      nodeFetch,
      redact: this.redact,
      mocks: Array.isArray(init.mocks) ? init.mocks : [],
      timeoutMs: this.timeoutMs,
    });
    // Captured before user code runs (it may replace the context's JSON or Object).
    this.parse = vm.runInContext('JSON.parse', this.ctx);
    this.copySettings = vm.runInContext('(s) => ({...s})', this.ctx);
    this.settings = this.parse(JSON.stringify(init.settings || {}));
    this.classes = Object.keys(ERROR_CLASSES).map((name) => [vm.runInContext(name, this.ctx), ERROR_CLASSES[name]]);
    Object.defineProperty(this.ctx, '__sluiceSegment__', { value: () => this.segment(), enumerable: false });
    Object.defineProperty(this.ctx, '__sluiceBatch__', { value: () => this.batchCall(), enumerable: false });
    this.segmentScript = new vm.Script('__sluiceSegment__()', { filename: 'sluice:runtime' });
    this.batchScript = new vm.Script('__sluiceBatch__()', { filename: 'sluice:runtime' });
  }

  // --- loading -------------------------------------------------------------------------------
  load(code) {
    let script;
    try {
      script = new vm.Script(code, { filename: this.filename });
    } catch (exc) {
      const line = this.userLine(exc, true);
      throw Object.assign(new Error(), {
        wire: { type: 'FunctionSyntaxError', message: `syntax error: ${exc.message}`, line, filename: this.filename },
      });
    }
    try {
      script.runInContext(this.ctx, { timeout: this.timeoutMs });
    } catch (exc) {
      if (exc && exc.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
        throw Object.assign(new Error(), {
          wire: {
            type: 'FunctionLoadError',
            message: `loading the function took longer than the ${this.timeoutMs / 1000} s limit`,
            line: null,
            filename: this.filename,
          },
        });
      }
      const [type, message] = this.describe(exc);
      throw Object.assign(new Error(), {
        wire: {
          type: 'FunctionLoadError',
          message: `error while loading the function: ${type}: ${message}`,
          line: this.userLine(exc, false),
          filename: this.filename,
        },
      });
    }
    const probe = HANDLER_TYPES.map(
      (k) => `${k}: typeof ${camelName(k)} === 'function' ? ${camelName(k)} : undefined`,
    ).join(', ');
    const found = vm.runInContext(`({${probe}})`, this.ctx);
    for (const kind of HANDLER_TYPES) {
      if (typeof found[kind] === 'function') {
        this.handlers[kind] = found[kind];
        if (kind !== 'batch') this.eventHandlers[kind] = found[kind];
      }
    }
    const kinds = HANDLER_TYPES.filter((k) => k in this.handlers);
    if (kinds.length === 0) {
      throw Object.assign(new Error(), {
        wire: {
          type: 'NoHandlerError',
          message: `no handler defined: define at least one of ${HANDLER_TYPES.map(camelName).join(', ')}`,
          line: null,
          filename: this.filename,
        },
      });
    }
    return kinds;
  }

  userLine(exc, syntax) {
    if (exc === null || typeof exc !== 'object' || typeof exc.stack !== 'string') return null;
    const match = syntax ? exc.stack.match(new RegExp('^' + this.lineRe.source)) : exc.stack.match(this.lineRe);
    return match ? Number(match[1]) : null;
  }

  describe(exc) {
    if (exc !== null && typeof exc === 'object') {
      const ctor = exc.constructor && typeof exc.constructor.name === 'string' ? exc.constructor.name : '';
      const type = ctor && ctor !== 'Object' ? ctor : typeof exc.name === 'string' ? exc.name : 'Error';
      const message = 'message' in exc ? String(exc.message) : String(exc);
      return [type, this.redact(message)];
    }
    return ['Error', this.redact(String(exc))];
  }

  // --- the loop ------------------------------------------------------------------------------
  startTicking() {
    this.busy = true;
    this.lastHb = performance.now();
    this.tick = setInterval(() => {
      const now = performance.now();
      for (const [key, [deadline, onTimeout]] of this.deadlines) {
        if (deadline <= now) {
          this.deadlines.delete(key);
          onTimeout();
        }
      }
      if (now - this.lastHb >= HEARTBEAT_MS) {
        this.lastHb = now;
        writeAll(HEARTBEAT);
      }
    }, TICK_MS);
  }

  stopTicking() {
    this.busy = false;
    clearInterval(this.tick);
    this.deadlines.clear();
  }

  async runFrame(message) {
    this.startTicking();
    let batch = null;
    let results;
    try {
      const events = Array.isArray(message.events) ? message.events : [];
      if (message.mode === 'batch' && this.handlers.batch) [batch, results] = await this.runBatch(events);
      else results = await this.runSingles(events);
    } finally {
      this.stopTicking();
    }
    return { op: 'result', id: message.id, results, batch, recycle: this.recycle };
  }

  runSingles(events) {
    const state = {
      events,
      results: new Array(events.length),
      i: 0,
      key: '',
      pending: 0,
      looped: false,
      resolve: null,
    };
    this.state = state;
    return new Promise((resolve) => {
      state.resolve = resolve;
      const step = () => {
        while (state.i < events.length) {
          try {
            if (events.length === 1) {
              // vm's timeout starts a watchdog thread per call (≈0.3–2 ms at p99): a lone event
              // has no neighbour to protect, so a synchronous loop in it is left to the parent's
              // watchdog (no heartbeat → the worker is killed and the event ends as timeout).
              this.segmentScript.runInContext(this.ctx);
            } else {
              this.segmentScript.runInContext(this.ctx, { timeout: this.timeoutMs + SEGMENT_MS });
            }
          } catch (exc) {
            if (!(exc && exc.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT')) throw exc;
            // The event being run kept the loop busy past the limit (a synchronous loop).
            const i = state.i;
            if (state.results[i] === undefined) {
              state.results[i] = this.timeoutResult(state.current, state.currentInv);
            }
            this.recycle = true;
            state.i = i + 1;
          }
          if (state.i < events.length) {
            setImmediate(step); // let heartbeats and I/O run between segments
            return;
          }
        }
        state.looped = true;
        if (state.pending === 0) resolve(state.results);
      };
      step();
    });
  }

  // Runs handlers synchronously (inside vm's timeout) until SEGMENT_MS have passed.
  segment() {
    const state = this.state;
    const { events, results } = state;
    const handlers = this.eventHandlers;
    const settings = this.settings;
    const start = performance.now();
    while (state.i < events.length) {
      const i = state.i;
      const event = events[i];
      const kind = event !== null && typeof event === 'object' && !Array.isArray(event) ? event.type : undefined;
      const handler = typeof kind === 'string' ? handlers[kind] : undefined;
      if (handler === undefined) {
        results[i] = this.unsupported(event, kind);
        state.i = i + 1;
        continue;
      }
      const inv = new Invocation();
      const t0 = performance.now();
      state.current = t0;
      state.currentInv = inv;
      let value;
      let failed = false;
      let exc;
      try {
        value = als.run(inv, handler, event, this.copySettings(settings));
      } catch (e) {
        failed = true;
        exc = e;
      }
      if (failed) results[i] = this.complete(undefined, exc, inv, t0, false);
      else if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
        this.watch(state, i, value, inv, t0, false);
      } else results[i] = this.complete(value, undefined, inv, t0, false);
      state.i = i + 1;
      if (performance.now() - start > SEGMENT_MS) break;
    }
  }

  watch(state, i, promise, inv, t0, batch) {
    state.pending += 1;
    const settle = (value, exc, failed) => {
      if (state.results[i] !== undefined) return; // already ended as timeout
      this.deadlines.delete(state.key + i);
      state.results[i] = failed ? this.complete(undefined, exc, inv, t0, batch) : this.complete(value, undefined, inv, t0, batch);
      state.pending -= 1;
      if (state.pending === 0 && state.looped) state.resolve(state.results);
    };
    this.deadlines.set(state.key + i, [
      t0 + this.timeoutMs,
      () => {
        if (state.results[i] !== undefined) return;
        this.recycle = true; // the handler may still be running
        state.results[i] = this.timeoutResult(t0, inv);
        state.pending -= 1;
        if (state.pending === 0 && state.looped) state.resolve(state.results);
      },
    ]);
    try {
      promise.then(
        (v) => settle(v, undefined, false),
        (e) => settle(undefined, e, true),
      );
    } catch (e) {
      settle(undefined, e, true);
    }
  }

  timeoutResult(t0, inv) {
    const message = `the function ran past the ${this.timeoutMs / 1000} s time limit`;
    const result = this.result('timeout', null, err('Timeout', message), inv || new Invocation(), 0);
    result.durationMs = t0 === undefined ? this.timeoutMs : Math.max(this.timeoutMs, performance.now() - t0);
    return result;
  }

  unsupported(event, kind) {
    let what = typeof kind === 'string' ? camelName(kind) : 'handler (the event has no type)';
    if (event === null || typeof event !== 'object' || Array.isArray(event)) what = 'handler (the event is not a JSON object)';
    return this.result('unsupported_event_type', null, err('EventNotSupported', `the function defines no ${what}`), null, 0);
  }

  errorSlot(value) {
    if (value === null || typeof value !== 'object') return null;
    for (const [cls, status] of this.classes) {
      if (value instanceof cls) {
        const [type, message] = this.describe(value);
        return [status, type, message];
      }
    }
    return null;
  }

  complete(value, exc, inv, t0, batch) {
    const duration = performance.now() - t0;
    if (exc === undefined) {
      if (value === undefined || value === null) return this.result('filtered', null, null, inv, duration);
      // (in batch mode any object goes on to pairing, which names a wrong shape BatchShapeError)
      if (typeof value === 'object' && (batch || !Array.isArray(value))) {
        return this.result('ok', value, null, inv, duration);
      }
      const want = batch ? 'an array of events' : 'the event (an object) or nothing';
      const error = err('TypeError', `handler returned ${typeName(value)}; return ${want}`);
      return this.result('bad_request', null, error, inv, duration);
    }
    if (exc && exc.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return this.timeoutResult(t0, inv);
    const slot = this.errorSlot(exc);
    if (slot !== null) return this.result(slot[0], null, err(slot[1], slot[2]), inv, duration);
    const [type, message] = this.describe(exc);
    const line = exc instanceof NotAvailableError ? null : this.userLine(exc, false);
    return this.result('bad_request', null, err(type, message + (line ? ` (line ${line})` : '')), inv, duration);
  }

  result(status, event, error, inv, duration) {
    const result = { status, event, durationMs: duration };
    if (error !== null) result.error = error;
    if (inv !== null) {
      if (inv.logs !== null) result.logs = this.secrets.length ? inv.logs.map(this.redact) : inv.logs;
      if (inv.requests !== null) result.requests = inv.requests;
    }
    return result;
  }

  // --- onBatch -------------------------------------------------------------------------------
  batchCall() {
    const state = this.state;
    const inv = new Invocation();
    state.inv = inv;
    state.t0 = performance.now();
    try {
      state.value = als.run(inv, this.handlers.batch, state.events, this.copySettings(this.settings));
    } catch (e) {
      state.failed = true;
      state.exc = e;
    }
  }

  async runBatch(events) {
    const state = { events, results: [undefined], pending: 0, looped: false, key: 'batch', resolve: null };
    this.state = state;
    const done = new Promise((resolve) => {
      state.resolve = resolve;
    });
    try {
      this.batchScript.runInContext(this.ctx, { timeout: this.timeoutMs });
      const value = state.value;
      if (state.failed) state.results[0] = this.complete(undefined, state.exc, state.inv, state.t0, true);
      else if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
        this.watch(state, 0, value, state.inv, state.t0, true);
      } else state.results[0] = this.complete(value, undefined, state.inv, state.t0, true);
    } catch (exc) {
      if (!(exc && exc.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT')) throw exc;
      this.recycle = true;
      state.results[0] = this.timeoutResult(state.t0, state.inv);
    }
    state.looped = true;
    if (state.pending === 0) state.resolve(state.results);
    const [result] = await done;
    const batch = {
      status: result.status,
      error: result.error || null,
      logs: result.logs || [],
      requests: result.requests || [],
      durationMs: result.durationMs,
    };
    if (result.status !== 'ok') {
      return [batch, events.map(() => ({ status: result.status, event: null, error: result.error || null }))];
    }
    let slots;
    try {
      slots = pairBatch(events, result.event, (v) => this.errorSlot(v));
    } catch (exc) {
      if (!(exc instanceof BatchShapeError)) throw exc;
      const error = err('BatchShapeError', this.redact(exc.message));
      batch.status = 'bad_request';
      batch.error = error;
      return [batch, events.map(() => ({ status: 'bad_request', event: null, error }))];
    }
    return [batch, slots.map(([status, event, error]) => ({ status, event, error }))];
  }

  // --- the reply -----------------------------------------------------------------------------
  encodeReply(reply) {
    const parts = [];
    let offset = 1;
    for (const result of reply.results) {
      const event = result.event;
      result.event = undefined;
      if (result.status !== 'ok') continue;
      let text;
      try {
        text = JSON.stringify(event);
      } catch (exc) {
        result.status = 'bad_request';
        result.error = err('TypeError', `returned event is not JSON: ${this.redact(String(exc && exc.message))}`);
        continue;
      }
      if (typeof text !== 'string' || text.charCodeAt(0) !== 123 /* { */) {
        result.status = 'bad_request';
        result.error = err('TypeError', 'returned event is not a JSON object');
        continue;
      }
      const length = Buffer.byteLength(text, 'utf8');
      if (length > this.maxEventBytes) {
        const message = `returned event is ${length} bytes, over the ${this.maxEventBytes} byte limit`;
        result.status = 'bad_request';
        result.error = err('OutputTooLarge', message);
        continue;
      }
      result.at = [offset, length];
      parts.push(text);
      offset += length + 1;
    }
    const payload = Buffer.from('[' + parts.join(',') + ']', 'utf8');
    reply.payloadBytes = payload.length;
    const meta = Buffer.from(JSON.stringify(reply), 'utf8');
    return Buffer.concat([header(meta.length), meta, header(payload.length), payload]);
  }
}

// --- frame input -------------------------------------------------------------------------------
let chunks = [];
let buffered = 0;
const frames = [];
let runner = null;
let pumping = false;
let ended = false;

function takeFrames() {
  while (buffered >= 4) {
    let head = chunks[0];
    if (head.length < 4) {
      head = Buffer.concat(chunks);
      chunks = [head];
    }
    const length = head.readUInt32BE(0);
    if (length > MAX_FRAME_BYTES) {
      process.stderr.write(`sluice js worker: frame of ${length} bytes is over the limit\n`);
      process.exit(3);
    }
    if (buffered < 4 + length) return;
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    frames.push(all.subarray(4, 4 + length));
    const rest = all.subarray(4 + length);
    chunks = rest.length ? [rest] : [];
    buffered = rest.length;
  }
}

function loadError(wire) {
  wire.message = runner ? runner.redact(String(wire.message)) : String(wire.message);
  writeAll(encodeFrame({ op: 'load_error', error: wire }));
  process.exit(0);
}

function handleInit(body) {
  const init = JSON.parse(body.toString('utf8'));
  if (init.op !== 'init') process.exit(3);
  if (init.workdir) {
    try {
      process.chdir(String(init.workdir));
    } catch (exc) {
      process.stderr.write(`sluice js worker: cannot enter ${init.workdir}: ${exc.message}\n`);
    }
  }
  let handlers;
  try {
    runner = new Runner(init);
    handlers = runner.load(String(init.code || ''));
  } catch (exc) {
    if (exc && exc.wire) return loadError(exc.wire);
    throw exc;
  }
  const sandbox = { landlock_abi: Number(process.env.SLUICE_LANDLOCK_ABI || 0), runtime: 'node', node: process.versions.node, heap_limit_mb: runner.memoryMb };
  writeAll(encodeFrame({ op: 'ready', handlers, pid: process.pid, sandbox }));
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    while (frames.length) {
      const body = frames.shift();
      if (runner === null) {
        handleInit(body);
        continue;
      }
      const message = runner.parse(body.toString('utf8'));
      if (message === null || typeof message !== 'object') process.exit(3);
      if (message.op === 'stop') process.exit(0);
      if (message.op !== 'run') continue;
      const reply = await runner.runFrame(message);
      writeAll(runner.encodeReply(reply));
      if (runner.recycle) process.exit(0);
    }
  } finally {
    pumping = false;
  }
  if (ended) process.exit(0);
}

process.on('uncaughtException', (exc) => {
  const text = exc && exc.stack ? exc.stack : String(exc);
  process.stderr.write(`sluice js worker: uncaught exception: ${runner ? runner.redact(text) : text}\n`.slice(0, 2000));
});
process.on('unhandledRejection', (reason) => {
  const text = reason && reason.stack ? reason.stack : String(reason);
  process.stderr.write(`sluice js worker: unhandled rejection: ${runner ? runner.redact(text) : text}\n`.slice(0, 2000));
});

process.stdin.on('data', (chunk) => {
  chunks.push(chunk);
  buffered += chunk.length;
  takeFrames();
  pump().catch((exc) => {
    process.stderr.write(`sluice js worker: ${exc && exc.stack ? exc.stack : exc}\n`);
    process.exit(4);
  });
});
process.stdin.on('end', () => {
  ended = true;
  if (!pumping && frames.length === 0) process.exit(0);
});
