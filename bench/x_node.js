// bench/README.md's node measurement: 2 million Buffers of 16-215 bytes
// kept under 300 000 keys (each replaced about 7 times, so V8's collector
// frees the backing stores, some from its own threads), then gzip of 8 MiB.
const kept = new Map();
let sum = 0;
for (let i = 0; i < 2e6; i++)
	kept.set('k' + (i % 300000), Buffer.alloc(16 + (i % 200), i & 255));
for (const [, v] of kept)
	sum += v.length + v[0];
const zlib = require('zlib');
const big = Buffer.alloc(8 << 20, 7);
for (let i = 0; i < 5; i++)
	sum += zlib.gzipSync(big).length;
console.log(kept.size, sum);
