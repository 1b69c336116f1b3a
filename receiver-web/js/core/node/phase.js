// Where a node is in its life (`Phase` in core/src/node.rs): live; grace, {until, reason} (told
// the stream ended, waiting for the end chunk until `until`); draining, {until, ending} (letting
// the children take the last chunks until `until`); done. `node.phase` is `{kind, ...}`.

export const LIVE = 'live';
export const GRACE = 'grace';
export const DRAINING = 'draining';
export const DONE = 'done';
