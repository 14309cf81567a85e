'use strict';
// Pairing an onBatch result with its inputs (DESIGN §3.4) — the same rules as batching.py:
// - a list of the same length is paired by position; null/undefined at a position = filtered;
//   an error-class instance at a position gives that event its own outcome;
// - a shorter list is paired by messageId; inputs not returned are filtered; a returned event
//   with an unknown or missing messageId makes the whole batch bad_request;
// - anything else (not a list, a longer list) makes the whole batch bad_request.

class BatchShapeError extends Error {}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function isEvent(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// errorSlot(value) → [status, type, message] when value is an error-class instance, else null.
function pairBatch(inputs, returned, errorSlot) {
  if (!Array.isArray(returned)) {
    throw new BatchShapeError(`onBatch must return an array of events, got ${typeName(returned)}`);
  }
  const slot = (value) => {
    if (value === null || value === undefined) return ['filtered', null, null];
    const err = errorSlot(value);
    if (err !== null) return [err[0], null, { type: err[1], message: err[2] }];
    if (isEvent(value)) return ['ok', value, null];
    return [
      'bad_request',
      null,
      {
        type: 'TypeError',
        message: `onBatch returned ${typeName(value)} at this position; expected an event or null`,
      },
    ];
  };
  if (returned.length === inputs.length) return returned.map(slot);
  if (returned.length > inputs.length) {
    throw new BatchShapeError(
      `onBatch returned ${returned.length} events for ${inputs.length} inputs; ` +
        'an insert function returns at most one event per input',
    );
  }
  const index = new Map();
  inputs.forEach((event, position) => {
    const mid = isEvent(event) ? event.messageId : undefined;
    if (typeof mid === 'string' && !index.has(mid)) index.set(mid, position);
  });
  const slots = inputs.map(() => ['filtered', null, null]);
  const taken = new Set();
  for (const value of returned) {
    if (value === null || value === undefined) continue;
    if (!isEvent(value)) {
      throw new BatchShapeError(
        `onBatch returned a shorter array containing ${typeName(value)}; a shorter array is ` +
          'paired by messageId, so it may only hold events',
      );
    }
    const mid = value.messageId;
    if (typeof mid !== 'string' || !mid) {
      throw new BatchShapeError('onBatch returned a shorter array with an event that has no messageId');
    }
    if (!index.has(mid)) throw new BatchShapeError(`onBatch returned an event with unknown messageId '${mid}'`);
    const position = index.get(mid);
    if (taken.has(position)) throw new BatchShapeError(`onBatch returned messageId '${mid}' twice`);
    taken.add(position);
    slots[position] = ['ok', value, null];
  }
  return slots;
}

module.exports = { pairBatch, BatchShapeError };
