'use strict';
// The globals a JavaScript function sees: Segment's runtime (handlers' error classes, fetch,
// cache, console, the documented libraries under Segment's names), built as one fresh `vm`
// context per function instance (= per worker process).

const vm = require('vm');
const util = require('util');
const { AsyncLocalStorage } = require('async_hooks');

const LOG_LIMIT_BYTES = 4096;
const BODY_LIMIT_CHARS = 2048;
const REDACTED = '[REDACTED]';
const SENSITIVE_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
  'x-auth-token',
]);

// One handler call's logs and traced requests; reached through AsyncLocalStorage so handlers
// of one micro-batch that overlap on the event loop keep their own.
class Invocation {
  constructor() {
    this.logs = null;
    this.requests = null;
    this.logBytes = 0;
    this.truncated = false;
  }

  addLog(line) {
    if (this.truncated) return;
    if (this.logs === null) this.logs = [];
    const size = Buffer.byteLength(line, 'utf8') + 1;
    if (this.logBytes + size > LOG_LIMIT_BYTES) {
      const room = LOG_LIMIT_BYTES - this.logBytes;
      if (room > 0) this.logs.push(Buffer.from(line, 'utf8').subarray(0, room).toString('utf8').replace(/\uFFFD$/, ''));
      this.logs.push('… (logs truncated at 4 KB)');
      this.truncated = true;
      return;
    }
    this.logBytes += size;
    this.logs.push(line);
  }

  addRequest(record) {
    if (this.requests === null) this.requests = [];
    this.requests.push(record);
  }
}

const als = new AsyncLocalStorage();
const loadInvocation = new Invocation(); // what top-level code logs while loading

function currentInvocation() {
  return als.getStore() || loadInvocation;
}

function makeRedact(secrets) {
  const list = (secrets || []).filter((s) => typeof s === 'string' && s.length > 0);
  list.sort((a, b) => b.length - a.length);
  if (list.length === 0) return (text) => text;
  return (text) => {
    if (typeof text !== 'string') return text;
    for (const secret of list) {
      if (text.includes(secret)) text = text.split(secret).join(REDACTED);
    }
    return text;
  };
}

// --- console -----------------------------------------------------------------------------------
function makeConsole() {
  const write = (args) => {
    const inv = currentInvocation();
    const text = util.format(...args);
    for (const line of text.split('\n')) inv.addLog(line);
  };
  const counts = new Map();
  const timers = new Map();
  const c = {
    log: (...a) => write(a),
    info: (...a) => write(a),
    debug: (...a) => write(a),
    warn: (...a) => write(a),
    error: (...a) => write(a),
    trace: (...a) => write(['Trace:', ...a]),
    dir: (obj, opts) => write([util.inspect(obj, opts)]),
    table: (data) => write([util.inspect(data)]),
    assert: (cond, ...a) => {
      if (!cond) write(['Assertion failed' + (a.length ? ':' : ''), ...a]);
    },
    count: (label = 'default') => {
      const n = (counts.get(label) || 0) + 1;
      counts.set(label, n);
      write([`${label}: ${n}`]);
    },
    countReset: (label = 'default') => counts.delete(label),
    time: (label = 'default') => timers.set(label, performance.now()),
    timeEnd: (label = 'default') => {
      const t = timers.get(label);
      if (t !== undefined) {
        timers.delete(label);
        write([`${label}: ${(performance.now() - t).toFixed(3)}ms`]);
      }
    },
    timeLog: (label = 'default', ...a) => {
      const t = timers.get(label);
      if (t !== undefined) write([`${label}: ${(performance.now() - t).toFixed(3)}ms`, ...a]);
    },
    group: (...a) => a.length && write(a),
    groupCollapsed: (...a) => a.length && write(a),
    groupEnd: () => {},
  };
  return c;
}

// --- cache (process-local, TTL in ms, LRU-bounded — Segment's semantics) -----------------------
function makeCache(maxEntries = 1000) {
  const entries = new Map(); // key → [expiresAt | null, value]
  const loading = new Map(); // key → promise
  return {
    async load(key, ttl, fn) {
      key = String(key);
      const now = performance.now();
      const hit = entries.get(key);
      if (hit !== undefined && (hit[0] === null || hit[0] > now)) {
        entries.delete(key);
        entries.set(key, hit);
        return hit[1];
      }
      const pending = loading.get(key);
      if (pending !== undefined) return pending;
      if (typeof fn !== 'function') throw new TypeError('cache.load(key, ttl, fn): fn must be a function');
      const promise = (async () => fn())();
      loading.set(key, promise);
      let value;
      try {
        value = await promise;
      } finally {
        loading.delete(key);
      }
      const expires = ttl === undefined || ttl === null || ttl < 0 ? null : performance.now() + Number(ttl);
      entries.delete(key);
      entries.set(key, [expires, value]);
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value);
      return value;
    },
    delete(key) {
      entries.delete(String(key));
    },
  };
}

// --- fetch: node-fetch v2, every call traced -----------------------------------------------------
function globMatch(pattern, text) {
  // fnmatch-style: * any run, ? one character, [..] a class
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp('^' + re + '$', 's').test(text);
}

function truncate(text) {
  if (text === null || text === undefined) return null;
  if (text.length > BODY_LIMIT_CHARS) return text.slice(0, BODY_LIMIT_CHARS) + `… (${text.length} characters, truncated)`;
  return text;
}

function bodyText(body) {
  if (body === null || body === undefined) return null;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  if (body instanceof ArrayBuffer) return Buffer.from(body).toString('utf8');
  if (typeof body.toString === 'function' && body.constructor && body.constructor.name === 'URLSearchParams') {
    return body.toString();
  }
  return `[${(body.constructor && body.constructor.name) || typeof body} body]`;
}

function makeFetch(nodeFetch, { redact, mocks, defaultTimeoutMs }) {
  const { Headers, Response } = nodeFetch;
  const redactHeaders = (headers) => {
    const out = {};
    for (const [k, v] of Object.entries(headers)) out[k] = SENSITIVE_HEADERS.has(k.toLowerCase()) ? REDACTED : redact(v);
    return out;
  };
  const plainHeaders = (h) => {
    const out = {};
    if (h) for (const [k, v] of new Headers(h)) out[k] = v;
    return out;
  };
  const mockFor = (method, url) => {
    for (const mock of mocks) {
      const want = String(mock.method || '*').toUpperCase();
      if (want !== '*' && want !== method) continue;
      const pattern = String(mock.url === undefined ? '*' : mock.url);
      if (url === pattern || globMatch(pattern, url)) return mock;
    }
    return null;
  };
  const mockResponse = (mock, url) => {
    if (mock.error) {
      throw new nodeFetch.FetchError(String(mock.error), 'system');
    }
    const headers = Object.assign({}, mock.headers || {});
    let content;
    if ('json' in mock) {
      content = JSON.stringify(mock.json);
      if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    } else content = mock.body === undefined || mock.body === null ? '' : String(mock.body);
    return new Response(content, { status: Number(mock.status || 200), headers, url });
  };

  async function fetch(resource, init) {
    const opts = Object.assign({}, init || {});
    const url = typeof resource === 'string' ? resource : resource && resource.url ? resource.url : String(resource);
    const method = String(opts.method || (resource && resource.method) || 'GET').toUpperCase();
    if (opts.timeout === undefined) opts.timeout = defaultTimeoutMs;
    const inv = als.getStore();
    const record = {
      method,
      url: redact(url),
      requestHeaders: redactHeaders(plainHeaders(opts.headers)),
      requestBody: redact(truncate(bodyText(opts.body))),
      status: null,
      responseHeaders: {},
      responseBody: null,
      durationMs: 0,
    };
    const started = performance.now();
    const done = () => {
      record.durationMs = Math.round((performance.now() - started) * 1000) / 1000;
      if (inv) inv.addRequest(record);
    };
    let response;
    let content;
    try {
      const mock = mockFor(method, url);
      const res = mock !== null ? mockResponse(mock, url) : await nodeFetch(resource, opts);
      content = await res.buffer();
      response = new Response(content, {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers,
        url: res.url || url,
      });
    } catch (err) {
      record.error = redact(`${(err && err.name) || 'Error'}: ${err && err.message}`);
      done();
      throw err;
    }
    record.status = response.status;
    record.responseHeaders = redactHeaders(plainHeaders(response.headers));
    record.responseBody = redact(truncate(content.toString('utf8')));
    done();
    return response;
  }
  return fetch;
}

// --- the context -------------------------------------------------------------------------------
const ERROR_CLASSES = {
  EventNotSupported: 'unsupported_event_type',
  InvalidEventPayload: 'message_rejected',
  ValidationError: 'message_rejected',
  RetryError: 'retry',
  DropEvent: 'dropped',
};

function selfNamed(value, name) {
  if (!Object.prototype.hasOwnProperty.call(value, name)) {
    Object.defineProperty(value, name, { value, enumerable: false, configurable: true, writable: true });
  }
  return value;
}

// Segment's runtime list: name → [npm package, how to load it]. Loaded on first use.
function libraries(nodeFetch) {
  return {
    _: () => require('lodash'),
    moment: () => require('moment-timezone'),
    jsonwebtoken: () => require('jsonwebtoken'),
    xml: () => require('xml'),
    xml2js: () => require('xml2js'),
    // Segment's examples do `uuidv5 = uuidv5.uuidv5` inside a handler, so the inner name refers to
    // itself: the second invocation (module state persists) still finds it.
    uuidv5: () => selfNamed(require('uuidv5'), 'uuidv5'),
    // Node's own zlib: the npm `zlib@1.0.5` of Segment's list is a native addon that no longer builds.
    zlib: () => selfNamed(require('zlib'), 'zlib'),
    FormData: () => require('form-data'),
    libphonenumberjslib: () => ({ libphonenumberjs: require('libphonenumber-js') }),
    fetchretrylib: () => ({ fetchretry: require('fetch-retry') }),
    OAuth: () => require('oauth'),
    https: () => require('https'),
    crypto: () => require('crypto'),
    Headers: () => nodeFetch.Headers,
  };
}

// Names of Segment's runtime that sluice does not ship: [global, package].
const NOT_SHIPPED = [
  ['AWS', 'aws-sdk'],
  ['google', '@google-cloud/*'],
  ['hubspotlib', '@hubspot/api-client'],
  ['jsforce', 'jsforce'],
  ['mailchimplib', '@mailchimp/mailchimp_marketing'],
  ['nodemailjet', 'node-mailjet'],
  ['sendgrid', '@sendgrid/client and @sendgrid/mail'],
  ['skyflowlib', 'skyflow-node'],
  ['stripe', 'stripe'],
  ['twilio', 'twilio'],
  ['winstonlib', 'winston'],
];

class NotAvailableError extends Error {}

function defineLazy(target, name, load) {
  Object.defineProperty(target, name, {
    configurable: true,
    enumerable: false,
    get() {
      const value = load();
      Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
      return value;
    },
    set(value) {
      Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
    },
  });
}

function buildContext({ nodeFetch, redact, mocks, timeoutMs }) {
  const sandbox = {};
  const globals = {
    console: makeConsole(),
    fetch: makeFetch(nodeFetch, { redact, mocks, defaultTimeoutMs: timeoutMs }),
    cache: makeCache(),
    Buffer,
    URL,
    URLSearchParams,
    TextEncoder,
    TextDecoder,
    AbortController,
    AbortSignal,
    atob,
    btoa,
    structuredClone,
    queueMicrotask,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    setImmediate,
    clearImmediate,
    require: function require(name) {
      throw new Error(
        `require('${name}') is not available in sluice functions (as in Segment): ` +
          "use the runtime's globals instead (fetch, _, moment, crypto, https, …)",
      );
    },
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(sandbox, name, { value, writable: true, configurable: true, enumerable: false });
  }
  for (const [name, load] of Object.entries(libraries(nodeFetch))) defineLazy(sandbox, name, load);
  for (const [name, pkg] of NOT_SHIPPED) {
    defineLazy(sandbox, name, () => {
      throw new NotAvailableError(
        `${name} (${pkg}) is part of Segment's functions runtime but is not available in sluice's runtime; ` +
          'call its HTTP API with fetch instead',
      );
    });
  }
  // sluice's persistent `store` (DESIGN §3.5) is not in the JavaScript runtime (yet).
  defineLazy(sandbox, 'store', () => {
    throw new NotAvailableError(
      'store is available to Python functions only; JavaScript functions can keep state in `cache` ' +
        '(process-local) or call an external store with fetch',
    );
  });
  const ctx = vm.createContext(sandbox, { name: 'sluice function', codeGeneration: { strings: true, wasm: false } });
  // The error classes are created inside the context so user code can extend them and
  // `instanceof` works there.
  const classes = Object.keys(ERROR_CLASSES)
    .map(
      (name) =>
        `Object.defineProperty(globalThis, '${name}', {value: class ${name} extends Error {` +
        `constructor(message) { super(message); this.name = '${name}'; } }, writable: true, configurable: true});`,
    )
    .join('\n');
  vm.runInContext(classes, ctx);
  return ctx;
}

module.exports = {
  Invocation,
  als,
  loadInvocation,
  makeRedact,
  buildContext,
  ERROR_CLASSES,
  NotAvailableError,
};
