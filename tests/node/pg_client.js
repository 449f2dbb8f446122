// node-postgres (`pg`, with `pg-copy-streams` for COPY) against the Postgres
// front, as a Node.js application uses it: a password login, parameters,
// timestamps, numbers and NULLs, and COPY FROM STDIN. tests/it/clients.rs
// runs it with the server's port and credentials; node_modules come from
// tests/node/package.json (installed by tests/setup).
//
// usage: node pg_client.js PORT DATABASE USER PASSWORD
'use strict';

const { Client } = require('pg');
const { from: copyFrom } = require('pg-copy-streams');
const { pipeline } = require('stream/promises');
const { Readable } = require('stream');

const [port, database, user, password] = process.argv.slice(2);

function check(description, ok, detail) {
  if (!ok) throw new Error(`${description}: ${JSON.stringify(detail)}`);
  console.log(`ok node-pg ${description}`);
}

async function main() {
  const client = new Client({ host: '127.0.0.1', port: Number(port), database, user, password });
  await client.connect();
  check('logs in with a password', true);

  const base = Date.UTC(2024, 0, 1);
  const inserted = await client.query(
    'INSERT INTO node_m (time, host, v, n) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)',
    [new Date(base), 'a', 1.5, 10, new Date(base + 60000), 'b', null, 20],
  );
  check('inserts with parameters', inserted.rowCount === 2, inserted.rowCount);

  const lines = [2, 3, 4].map((i) => `${new Date(base + i * 60000).toISOString()}\tc\t${i}.25\t${i}\n`).join('');
  const copy = client.query(copyFrom('COPY node_m (time, host, v, n) FROM STDIN'));
  await pipeline(Readable.from([lines]), copy);
  check('copies rows from stdin', copy.rowCount === 3, copy.rowCount);

  const result = await client.query('SELECT time, host, v, n FROM node_m WHERE host = $1 OR n >= $2 ORDER BY time', ['a', 2]);
  check('selects with parameters', result.rows.length === 5, result.rows);
  const [first, second] = result.rows;
  check('reads a timestamp as a Date', first.time instanceof Date && first.time.getTime() === base, first.time);
  check('reads a float as a number', first.v === 1.5, first.v);
  check('reads a NULL as null', second.v === null, second.v);
  // node-postgres hands int8 over as a string, to keep every digit.
  check('reads a bigint exactly', String(first.n) === '10', first.n);
  check('reads the rows COPY wrote', result.rows[4].host === 'c' && result.rows[4].v === 4.25, result.rows[4]);

  let refused = null;
  try {
    await client.query('SELECT nope FROM node_m');
  } catch (error) {
    refused = error;
  }
  check('gets a SQLSTATE for a bad query', refused && refused.code === '42703', refused && refused.code);
  await client.end();
}

main().catch((error) => {
  console.log(`FAILED: ${error.message}`);
  process.exit(1);
});
